"""Run by ci/check_wheels.py inside a fresh venv holding one wheel: import every module, then smoke-test.

    python import_all.py MODULE OPTIONAL_JSON EXTRAS_JSON SMOKE_CODE

A module may fail to import only for lack of a top-level module that one of the wheel's declared extras
provides (OPTIONAL_JSON maps such modules to their extra); anything else missing is an undeclared import.
"""

import importlib
import json
import pkgutil
import sys

module, smoke = sys.argv[1], sys.argv[4]
optional, extras = json.loads(sys.argv[2]), set(json.loads(sys.argv[3]))
pkg = importlib.import_module(module)
# __main__ modules run a program when imported (python -m); they are checked by the smoke call instead.
submodules = [m.name for m in pkgutil.walk_packages(pkg.__path__, module + ".")]
names = [module] + [n for n in submodules if not n.endswith(".__main__")]
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if optional.get(top) in extras:
            print(f"  {name}: not imported, needs {top} from the [{optional[top]}] extra")
        else:
            failed.append(f"{name}: {e!r}")
    except Exception as e:
        failed.append(f"{name}: {e!r}")
if failed:
    sys.exit("imports failed:\n  " + "\n  ".join(failed))
print(f"  imported {len(names)} modules of {module}")
exec(smoke)
