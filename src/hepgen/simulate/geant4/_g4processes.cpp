// Data-free electromagnetic processes for hepgen's Geant4 engine.
//
// geant4-pybind (0.1.3, Geant4 11.4) binds no process or model classes and ships no
// Geant4 headers, but its extension module exports every Geant4 symbol.  This file is
// compiled at first use with the system g++ (see engine.py) and loaded after geant4_pybind
// with RTLD_GLOBAL visibility, so the references below resolve to the wheel's own code.
//
// The classes are declared *opaquely*: only the constructors and member functions used
// here, with the exact signatures (hence the exact mangled names) of Geant4 11.  Objects
// are built with placement new into a block larger than any of these classes, because
// sizeof is unknown without the headers; Geant4 owns and deletes them through their
// virtual destructors (operator delete of a malloc'ed block, whatever its size).
//
// Every pointer conversion below is between a class and its first, non-virtual base in
// a single-inheritance chain (e.g. G4eBremsstrahlung -> G4VEnergyLossProcess -> ... ->
// G4VProcess), where the base sub-object sits at offset 0, so reinterpret_cast is exact.
#include <new>
#include <string>

class G4String : public std::string {  // Geant4 11: a std::string with no extra members
 public:
  G4String(const char* s) : std::string(s) {}
};

enum G4ProcessType { fNotDefined, fTransportation, fElectromagnetic };

class G4VProcess;
class G4VEmModel;
class G4VMscModel;
class G4VEmFluctuationModel;
class G4Region;

class G4ParticleDefinition;
class G4Gamma { public: static G4ParticleDefinition* Gamma(); };
class G4Electron { public: static G4ParticleDefinition* Electron(); };
class G4Positron { public: static G4ParticleDefinition* Positron(); };

class G4PhysicsListHelper {
 public:
  static G4PhysicsListHelper* GetPhysicsListHelper();
  void AddTransportation();
  bool RegisterProcess(G4VProcess* process, G4ParticleDefinition* particle);
};

class G4VEnergyLossProcess { public: void SetEmModel(G4VEmModel*, int index); };
class G4VEmProcess { public: void SetEmModel(G4VEmModel*, int index); };

class G4PhotoElectricEffect { public: G4PhotoElectricEffect(const G4String&, G4ProcessType); };
class G4ComptonScattering { public: G4ComptonScattering(const G4String&, G4ProcessType); };
class G4GammaConversion { public: G4GammaConversion(const G4String&, G4ProcessType); };
class G4eMultipleScattering { public: G4eMultipleScattering(const G4String&); };
class G4eIonisation { public: G4eIonisation(const G4String&); };
class G4eBremsstrahlung { public: G4eBremsstrahlung(const G4String&); };
class G4eplusAnnihilation { public: G4eplusAnnihilation(const G4String&); };
class G4PEEffectFluoModel { public: G4PEEffectFluoModel(const G4String&); };
class G4KleinNishinaCompton { public: G4KleinNishinaCompton(const G4ParticleDefinition*, const G4String&); };
class G4eBremsstrahlungRelModel {
 public:
  G4eBremsstrahlungRelModel(const G4ParticleDefinition*, const G4String&);
};

namespace {
constexpr std::size_t kBlock = 1 << 15;  // 32 KiB: more than any of these objects

template <class T, class... A>
T* make(A&&... args) {
  void* mem = ::operator new(kBlock);
  return new (mem) T(static_cast<A&&>(args)...);
}

template <class T>
G4VProcess* proc(T* p) { return reinterpret_cast<G4VProcess*>(p); }

// Bremsstrahlung with the relativistic model from the lowest energy: G4eBremsstrahlung
// creates Seltzer-Berger (which reads G4EMLOW/brem_SB) only when model 0 is unset.  Its
// initialisation caps model 0 at 1 GeV and adds a second relativistic model above.
G4VProcess* brems(const char* name) {
  auto* p = make<G4eBremsstrahlung>(G4String(name));
  auto* m = make<G4eBremsstrahlungRelModel>(static_cast<const G4ParticleDefinition*>(nullptr),
                                            G4String("eBremLPM"));
  reinterpret_cast<G4VEnergyLossProcess*>(p)->SetEmModel(reinterpret_cast<G4VEmModel*>(m), 0);
  return proc(p);
}
}  // namespace

extern "C" {

// Version of this interface; engine.py checks it.
int hepgen_g4_abi() { return 1; }

// Transportation plus the data-free EM processes for gamma, e- and e+.  Call from the
// physics list's ConstructProcess.  Returns the number of processes registered.
int hepgen_g4_construct_em() {
  G4PhysicsListHelper* ph = G4PhysicsListHelper::GetPhysicsListHelper();
  ph->AddTransportation();
  int n = 0;
  G4ParticleDefinition* gamma = G4Gamma::Gamma();
  G4ParticleDefinition* electron = G4Electron::Electron();
  G4ParticleDefinition* positron = G4Positron::Positron();

  auto* pe = make<G4PhotoElectricEffect>(G4String("phot"), fElectromagnetic);
  reinterpret_cast<G4VEmProcess*>(pe)->SetEmModel(
      reinterpret_cast<G4VEmModel*>(make<G4PEEffectFluoModel>(G4String("PhotoElectric"))), 0);
  n += ph->RegisterProcess(proc(pe), gamma);
  auto* compt = make<G4ComptonScattering>(G4String("compt"), fElectromagnetic);
  reinterpret_cast<G4VEmProcess*>(compt)->SetEmModel(
      reinterpret_cast<G4VEmModel*>(make<G4KleinNishinaCompton>(
          static_cast<const G4ParticleDefinition*>(nullptr), G4String("Klein-Nishina"))), 0);
  n += ph->RegisterProcess(proc(compt), gamma);
  n += ph->RegisterProcess(proc(make<G4GammaConversion>(G4String("conv"), fElectromagnetic)), gamma);

  n += ph->RegisterProcess(proc(make<G4eMultipleScattering>(G4String("msc"))), electron);
  n += ph->RegisterProcess(proc(make<G4eIonisation>(G4String("eIoni"))), electron);
  n += ph->RegisterProcess(brems("eBrem"), electron);

  n += ph->RegisterProcess(proc(make<G4eMultipleScattering>(G4String("msc"))), positron);
  n += ph->RegisterProcess(proc(make<G4eIonisation>(G4String("eIoni"))), positron);
  n += ph->RegisterProcess(brems("eBrem"), positron);
  n += ph->RegisterProcess(proc(make<G4eplusAnnihilation>(G4String("annihil"))), positron);
  return n;
}

}  // extern "C"
