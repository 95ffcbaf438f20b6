"""Optional mypyc builds of the proxy's hot pure modules, and when to use them.

``make deps`` runs :func:`build`: each module of
:data:`MODULES` is compiled by mypyc *on its own* (one extension per module,
so a compiled module treats every other module's objects as plain Python
objects and any mix of compiled and pure modules is valid) into
``<venv>/podnet-native/podnet/proxy/``, never into the source tree, with a
stamp holding the digest of the sources it was built from. Profiling a
worker under load put a quarter of its Python time in these modules; compiled,
they take a third less.

At import, :func:`activate` (called by ``podnet/proxy/__init__.py``) puts that
directory in front of the package's ``__path__`` -- so the extensions shadow
their ``.py`` files -- only when the stamp matches the current sources. An
edited source, a failed build or no build at all simply means pure Python;
``PODNET_PURE=1`` forces it (for debugging and comparisons).

Only modules whose test suites pass compiled are listed. (The framing core
is left out: mypyc mishandles some of its idioms, e.g. a method alias as a
class attribute and ``cls.__new__`` on a native class.)
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import MutableSequence
from pathlib import Path
from typing import Final

__all__ = ["MODULES", "activate", "build", "native_dir", "sources_digest"]

#: The modules compiled, relative to this package.
MODULES: Final = ("fast", "fastlane", "routing", "balancers", "metrics", "resilience")
_PACKAGE: Final = Path(__file__).resolve().parent
_STAMP: Final = "sources.sha256"


def native_dir() -> Path:
    """Where the extensions of this interpreter's environment go."""
    return Path(sys.prefix) / "podnet-native" / "podnet" / "proxy"


def sources_digest() -> str:
    """A digest of what the extensions depend on: this package's and the model's sources
    (their types), the interpreter and mypyc's version."""
    digest = hashlib.sha256(sys.version.encode())
    for folder in (_PACKAGE, _PACKAGE.parent / "model"):
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def activate(package_path: MutableSequence[str]) -> bool:
    """Put up-to-date extensions in front of ``package_path`` (the package's ``__path__``)."""
    if os.environ.get("PODNET_PURE"):
        return False
    target = native_dir()
    try:
        stamp = (target / _STAMP).read_text().strip()
    except OSError:
        return False
    if stamp != sources_digest():
        return False
    package_path.insert(0, str(target))
    return True


def _compile(module: str, out: Path) -> str | None:
    """Compile one module in a scratch copy of the package; None on success, else why not."""
    import shutil
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="podnet-mypyc-") as scratch:
        tree = Path(scratch) / "podnet"
        shutil.copytree(_PACKAGE.parent, tree, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        argv = [sys.executable, "-m", "mypyc", f"podnet/proxy/{module}.py"]
        done = subprocess.run(argv, cwd=scratch, capture_output=True, text=True, check=False)
        built = sorted((tree / "proxy").glob(f"{module}*.so"))
        if done.returncode != 0 or not built:
            return (done.stdout + done.stderr).strip()[-2000:] or "no extension built"
        for path in built:
            shutil.copy2(path, out / path.name)
    return None


def build() -> int:
    """Build every module of MODULES; stamp the result only when all of them built."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    target = native_dir()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    digest = sources_digest()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        errors = dict(zip(MODULES, pool.map(lambda m: _compile(m, target), MODULES), strict=True))
    failed = {module: error for module, error in errors.items() if error is not None}
    for module, error in failed.items():
        print(f"podnet: mypyc could not compile podnet.proxy.{module}:\n{error}", file=sys.stderr)
    if failed:
        shutil.rmtree(target, ignore_errors=True)
        print("podnet: the proxy runs as pure Python", file=sys.stderr)
        return 1
    (target / _STAMP).write_text(digest + "\n")
    print(f"podnet: compiled {', '.join(MODULES)} with mypyc into {target}")
    return 0
