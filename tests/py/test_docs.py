"""docs/configuration.md lists exactly what `rotor --help-config --markdown` prints."""
import os
import subprocess

from conftest import ROOT, ROTOR


def test_configuration_doc_is_current():
    table = subprocess.run([ROTOR, "--help-config", "--markdown"], capture_output=True, text=True,
                           check=True).stdout
    doc = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    assert table.strip() in doc, "docs/configuration.md is stale: regenerate it with rotor --help-config --markdown"


def test_help_config_plain_lists_keys():
    out = subprocess.run([ROTOR, "--help-config"], capture_output=True, text=True, check=True).stdout
    for key in ("threads", "ctx_size", "chat_template", "temperature", "level"):
        assert key in out
