"""The owners' guide's example agent.yaml (docs/owners.md) is complete and is read as it says."""

import re
from pathlib import Path

from agent.config import RULES, AgentConfig, load_config

OWNERS = Path(__file__).resolve().parents[2] / "docs" / "owners.md"


def example() -> str:
    text = OWNERS.read_text()
    found = re.search(r"```yaml\n(# /etc/tassium/agent.yaml.*?)```", text, re.DOTALL)
    assert found, "docs/owners.md has no example agent.yaml"
    return found.group(1)


def test_the_readme_example_names_every_setting(tmp_path):
    named = set(re.findall(r"^#? ?(\w+):", example(), re.MULTILINE))
    assert named == set(RULES)


def test_the_readme_example_is_read_as_the_defaults_it_claims(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(example())
    config = load_config(path, environ={})
    defaults = AgentConfig(collector_url=config.collector_url, wallet=config.wallet)
    assert config == defaults
    assert config.wallet == "0xc6592b9d0b8bc6f1a5e5fd8ce0b7cd1a2b3c4d5e"
