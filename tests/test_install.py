"""tools/install.py: pip's index settings reach uv unchanged (uv does not read pip's configuration)."""
from __future__ import annotations

import importlib.util
import os
import sys

from soundloc.paths import repo_root


def _install_module():
    spec = importlib.util.spec_from_file_location("soundloc_install_tool", repo_root() / "tools" / "install.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
