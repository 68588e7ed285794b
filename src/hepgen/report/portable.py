"""Self-contained HTML reports: files embedded as ``data:`` URIs, so that ``report.html`` is readable
when mailed or copied on its own (RFC 2397; every current browser shows them).

The figures stay beside the report too (``figures/NAME.png`` and ``.pdf``): the embedded PNG is
for reading, the PDF for papers.  :func:`external_references` lists what a page would load
from elsewhere; the reports' tests require it to be empty.
"""

from __future__ import annotations

import base64
import html.parser
import mimetypes
from pathlib import Path

__all__ = ["data_uri", "external_references"]


def data_uri(path, mime: str | None = None) -> str:
    """The file ``path`` as a ``data:MIME;base64,...`` URI (``mime`` from the suffix by default).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = p.write_text('{"a": 1}')
    >>> data_uri(p)
    'data:application/json;base64,eyJhIjogMX0='
    """
    path = Path(path)
    mime = mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


class _References(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action") and value is not None:
                v = value.strip()
                if not (v.startswith("data:") or v.startswith("#")):
                    self.found.append((tag, name, v))


def external_references(text: str) -> list[tuple[str, str, str]]:
    """``(tag, attribute, value)`` of every ``src``/``href``/… in the HTML ``text`` that is neither a
    ``data:`` URI nor an in-page anchor (``#...``): what the page needs besides itself.

    >>> external_references("<img src='data:image/png;base64,AA=='><a href='#top'>top</a>")
    []
    >>> external_references("<img src='figures/a.png'><link href='style.css'>")
    [('img', 'src', 'figures/a.png'), ('link', 'href', 'style.css')]
    """
    parser = _References()
    parser.feed(text)
    parser.close()
    return parser.found
