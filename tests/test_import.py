"""The engine stays UI-free: importing all of mfcore never loads streamlit."""

import subprocess
import sys


def test_importing_mfcore_never_imports_streamlit():
    code = (
        "import sys, pkgutil, importlib, mfcore\n"
        "for m in pkgutil.walk_packages(mfcore.__path__, 'mfcore.'):\n"
        "    if m.name != 'mfcore.__main__': importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n == 'streamlit' or n.startswith('streamlit.'))\n"
        "print(len(loaded)); assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
