"""tools/install.py and tools/native_check.py: pip's settings reach uv, and every native library loads from the venv."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from soundloc.paths import repo_root


def _tool(name: str):
    """tools/NAME.py as a module (the tools are scripts, not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"soundloc_tool_{name}", repo_root() / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _install_module():
    return _tool("install")


def test_pip_environment_settings_become_uv_options(monkeypatch, tmp_path):
    inst = _install_module()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configuration file: only the variables below
    monkeypatch.setenv("PIP_INDEX_URL", "http://mirror.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///a/simple file:///b/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "77")
    settings = inst.pip_settings(sys.executable)
    assert settings["index-url"] == ["http://mirror.example/simple"]
    assert settings["extra-index-url"] == ["file:///a/simple", "file:///b/simple"]
    args, env = inst.uv_args(settings)
    assert args == ["--compile-bytecode", "--index-strategy", "unsafe-best-match", "--index-url", "http://mirror.example/simple",
                    "--extra-index-url", "file:///a/simple", "--extra-index-url", "file:///b/simple",
                    "--find-links", "/wheels"]
    assert env == {"UV_HTTP_TIMEOUT": "77"}


def test_config_file_settings_and_environment_override(monkeypatch, tmp_path):
    inst = _install_module()
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://file.example/simple\nextra-index-url =\n    file:///x\n    file:///y\n"
                    "[install]\nfind-links = /w1 /w2\n")
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    settings = inst.pip_settings(sys.executable)
    assert settings["index-url"] == ["http://file.example/simple"]
    assert settings["extra-index-url"] == ["file:///x", "file:///y"]
    assert settings["find-links"] == ["/w1", "/w2"]
    monkeypatch.setenv("PIP_INDEX_URL", "http://env.example/simple")
    args, _ = inst.uv_args(inst.pip_settings(sys.executable))
    assert args[args.index("--index-url") + 1] == "http://env.example/simple"


def test_pip_constraint_file_reaches_uv(monkeypatch, tmp_path):
    inst = _install_module()
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nconstraint = /etc/caps.txt\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)
    args, _ = inst.uv_args(inst.pip_settings(sys.executable))
    assert args[-2:] == ["--constraint", "/etc/caps.txt"]


def test_soundfile_loads_the_libsndfile_it_ships():
    """The mapped libsndfile lies inside this environment: a pure soundfile wheel fails here even where the system
    has libsndfile1 (Debian's chromium pulls it in), which is how CI once hid a broken install."""
    code = ("import soundfile, os\n"
            "libs = {l.split()[-1] for l in open('/proc/self/maps') if 'libsndfile' in l.split()[-1]}\n"
            "print(*sorted(os.path.realpath(p) for p in libs), sep='\\n')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"import soundfile failed: {out.stderr.strip().splitlines()[-1:]}"
    libs = out.stdout.split()
    prefix = os.path.realpath(sys.prefix) + os.sep
    assert libs and all(p.startswith(prefix) for p in libs), \
        f"soundfile loads {libs}, not a library inside {sys.prefix}"


def test_every_native_library_comes_from_the_venv():
    """The install's own check, reused when the environment has not changed since (its digest), else run again."""
    out = subprocess.run([sys.executable, str(repo_root() / "tools" / "native_check.py"), "--reuse"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_native_check_record_follows_the_environment(tmp_path, monkeypatch):
    """The record is trusted only for the environment it was written for: another digest means a fresh check."""
    nc = _tool("native_check")
    digest = nc.environment_digest()
    assert digest == nc.environment_digest() and len(digest) == 64
    record = tmp_path / "native-check.json"
    monkeypatch.setattr(nc, "RECORD", record)
    calls = []
    monkeypatch.setattr(nc, "check", lambda: calls.append(1) or [])
    assert nc.main(["--reuse"]) == 0 and calls == [1]  # no record: checked, then recorded
    assert nc.main(["--reuse"]) == 0 and calls == [1]  # same environment: reused
    record.write_text('{"environment": "another", "problems": []}')
    assert nc.main(["--reuse"]) == 0 and calls == [1, 1]  # another environment: checked again
    monkeypatch.setattr(nc, "check", lambda: calls.append(1) or [{"dist": "x", "version": "1", "module": "x",
                                                                  "kind": "missing", "detail": "gone"}])
    record.unlink()
    assert nc.main(["--reuse"]) == 1 and not record.exists()  # a failed check is never recorded


def test_native_check_classifies_libraries():
    nc = _tool("native_check")
    venv = "/opt/venv/"
    assert nc.allowed_outside("/opt/venv/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so", venv)
    assert nc.allowed_outside("/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30", venv)  # manylinux policy
    assert nc.allowed_outside("/lib/x86_64-linux-gnu/libc.so.6", venv)
    assert not nc.allowed_outside("/usr/lib/x86_64-linux-gnu/libsndfile.so.1.0.35", venv)
    assert not nc.allowed_outside("/usr/lib/x86_64-linux-gnu/libvorbis.so.0", venv)


def test_native_check_blames_the_package_that_raised():
    """An import that fails inside another package's code (geoclip importing a broken soundfile) is that package's."""
    nc = _tool("native_check")
    dists = nc.closure()
    names = {d.metadata["Name"].lower() for d in dists}
    assert {"soundfile", "torch", "soxr", "ai-edge-litert"} <= names
    sf = next(d for d in dists if d.metadata["Name"].lower() == "soundfile")
    code = compile("raise OSError(\"cannot load library 'libsndfile.so'\")", str(sf.locate_file("soundfile.py")), "exec")
    with pytest.raises(OSError) as info:
        exec(code, {})
    assert nc._raised_by(info.value, dists) is sf


def test_native_check_blames_the_package_whose_import_maps_a_library():
    """A library mapped while importing geoclip (which pulls in soundfile) is soundfile's to ship."""
    import soundfile

    nc = _tool("native_check")
    dists = nc.closure()
    lib = os.path.realpath(soundfile._snd._name) if hasattr(soundfile._snd, "_name") else None
    if lib is None:  # cffi keeps no path: find it in this process's maps
        lib = next(os.path.realpath(l.split()[-1]) for l in open("/proc/self/maps") if "libsndfile" in l)
    blamed = nc._blame_system([lib], ["geoclip", "soundfile"], dists)
    assert blamed is not None and blamed.metadata["Name"].lower() == "soundfile"
    names = [d.metadata["Name"].lower() for d in dists]
    assert names.index("numpy") < names.index("soundfile")  # requirements come before their dependants
