"""The setup script's two parts: the sh prologue, and the bash installer it hands to bash."""

from collector.install.setup import INSTALLER_END

OPENING = f"\nexec \"$@\" <<'{INSTALLER_END}'\n"


def installer(script: str) -> str:
    """The bash installer: the body of the script's one quoted here-document, as bash gets it
    on its stdin."""
    prologue, opening, rest = script.partition(OPENING)
    assert opening and OPENING not in rest, "the script has no single installer here-document"
    body, closing, after = rest.partition(f"\n{INSTALLER_END}\n")
    assert closing and after == "", "the installer's here-document must end the script"
    return body + "\n"
