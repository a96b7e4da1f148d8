#!/bin/sh
# Install, upgrade or remove the Tassium worker agent on a Debian or Ubuntu machine.
#
#   curl -s 'https://<collector>/api/setup?wallet=<wallet>' | sh
#   curl -fsSL 'https://<collector>/setup.sh?wallet=<wallet>' | sh -s -- --no-docker
#   curl -fsSL 'https://<collector>/setup.sh?wallet=<wallet>' | sudo bash
#   curl -fsSL '...' | sh -s -- --docker-host unix:///run/user/<uid>/docker.sock
#   sh setup.sh --uninstall
#
# Re-running it upgrades in place: the key, the spool and the enrollment are kept.
#
# The installer is the bash script in the here-document below. These first lines are plain sh
# (the owner's line pipes this to sh: dash on Debian and Ubuntu) and hand it to bash as root,
# through sudo for a normal user. sh never parses a quoted here-document, and bash gets it on
# its stdin even when this script came on sh's own stdin from a pipe (sudo asks for a password
# on the terminal, not on stdin). A download cut short runs nothing: main is its last line.
setup_error() {
    printf 'tassium setup: error: %s\n' "$*" >&2
    exit 1
}
# Run from a file (a checkout), the installer takes the agent's unit from beside it.
setup_dir=''
if [ -f "$0" ]; then
    setup_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || setup_dir=''
fi
if [ "$(id -u)" -eq 0 ]; then
    set -- bash -s -- "$setup_dir" "$@"
else
    case " $* " in
        # Only the usage: nothing to become root for.
        *" -h "* | *" --help "*) set -- bash -s -- "$setup_dir" "$@" ;;
        *)
            command -v sudo >/dev/null 2>&1 \
                || setup_error "installing the agent needs root, and sudo is not installed:" \
                    "run this line as root, or install sudo and let $(id -un) use it"
            # The password prompt and "try again" go to the terminal; what sudo says on
            # stderr when it refuses is replaced by the one message below.
            sudo -v 2>/dev/null \
                || setup_error "installing the agent needs root, and sudo did not let $(id -un)" \
                    "become root (not allowed, or no password typed at a terminal):" \
                    "run this line as root, or as a user sudo allows"
            set -- sudo bash -s -- "$setup_dir" "$@"
            ;;
    esac
fi
exec "$@" <<'TASSIUM_SETUP_BASH'
set -Eeuo pipefail

# What each value must look like: the collector's own rules (protocol/patterns.py), filled in
# when it serves this script. This file carries the same, so that it also works from a
# checkout; a test keeps the two equal.
COLLECTOR_URL_RE='https?://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~/-]*)?'
EVM_WALLET_RE='0x[0-9a-fA-F]{40}'
STELLAR_WALLET_RE='G[A-Z2-7]{55}'
TOKEN_RE='tsk_[A-Za-z0-9_-]{43}'
PACKAGE_RE='[][A-Za-z0-9._~:/@=<>!,+%-]+'
SHA256_RE='[0-9a-f]{64}'
# The collector fills in these values when it serves this script; options override them.
COLLECTOR_URL=''
WALLET=''
WALLET_FORMAT='evm'
TOKEN=''
WHEEL_URL=''
WHEEL_SHA256=''
LOCK_URL=''
LOCK_SHA256=''
PACKAGE=''
AGENT_UNIT=''
# (end of the values the collector fills in)

PREFIX=/opt/tassium-agent
CONFIG_DIR=/etc/tassium
CONFIG=$CONFIG_DIR/agent.yaml
STATE_DIR=/var/lib/tassium-agent
KEY=$STATE_DIR/agent.key
UNIT_DIR=/etc/systemd/system
UNIT=$UNIT_DIR/tassium-agent.service
# With --docker-host: the unit without the docker group, able to reach /run/user/<uid>.
ROOTLESS_DROPIN=rootless-docker.conf
SERVICE_USER=tassium
# Seconds a Docker engine installed just now is given to answer before the warning below.
DOCKER_WAIT=30

SETUP_DIR=''
# Where the wheel and the lock wait, checked, until they are installed.
DOWNLOAD_DIR=''
INSTALL_DOCKER=yes
# --docker-host: the rootless engine's socket the agent uses instead of the docker group.
DOCKER_HOST_URL=''
# The script's own rule, stricter than agent.yaml's docker_host (any unix://, tcp://, ...): a
# socket by its absolute path, each name of letters, digits, ._- and none of them . or ..
DOCKER_SOCKET_PATTERN='unix://(/\.?[A-Za-z0-9_-][A-Za-z0-9._-]*)+'
ACTION=install
KEY_CHOICE=ask

usage() {
    cat <<'EOF'
Usage: setup.sh [options]

  --wallet ADDRESS     the wallet this worker is paid to
  --wallet-format F    evm (0x...) or stellar (G...), as the collector is configured
  --token TOKEN        an enrollment token from the operator (tsk_...)
  --collector URL      the collector's address (https://...)
  --package SPEC       what pip installs instead of the collector's own wheel
  --no-docker          do not install Docker when it is missing (without Docker,
                       heartbeats count as downtime: the worker is not paid)
  --docker-host URL    use the rootless Docker at this socket, unix:///run/user/<uid>/docker.sock
                       (<uid>: id -u tassium), instead of the docker group: the agent's user is
                       kept out of that group, Docker is not installed (set up rootless Docker
                       as that user yourself), and the unit gets a drop-in to reach the socket
  --uninstall          remove the agent, its unit, user, configuration and state
  --delete-key         with --uninstall: delete the worker key without asking
  --keep-key           with --uninstall: keep the worker key without asking
  -h, --help           this text
EOF
}

step() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'tassium setup: error: %s\n' "$*" >&2
    exit 1
}
# Any command that fails stops the script, saying which one.
on_error() {
    local status=$1 line=$2 command=$3
    printf 'tassium setup: error: "%s" failed (exit %d, line %d)\n' "$command" "$status" "$line" >&2
    exit "$status"
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
cleanup() {
    [[ -z $DOWNLOAD_DIR ]] || rm -rf -- "$DOWNLOAD_DIR"
}
trap cleanup EXIT

parse_options() {
    while (($#)); do
        case $1 in
            --wallet | --wallet-format | --token | --collector | --package | --docker-host)
                (($# >= 2)) || die "$1 needs a value"
                case $1 in
                    --wallet) WALLET=$2 ;;
                    --wallet-format) WALLET_FORMAT=$2 ;;
                    --token) TOKEN=$2 ;;
                    --collector) COLLECTOR_URL=$2 ;;
                    --package) PACKAGE=$2 ;;
                    --docker-host) DOCKER_HOST_URL=$2 ;;
                esac
                shift 2
                ;;
            --no-docker) INSTALL_DOCKER=no; shift ;;
            --uninstall) ACTION=uninstall; shift ;;
            --delete-key) KEY_CHOICE=delete; shift ;;
            --keep-key) KEY_CHOICE=keep; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
    done
}

# Whether all of $1 matches the pattern $2. In a variable, a pattern is read as a plain
# extended regular expression; in the C locale, [A-Z] means those 26 letters on every system.
matches() {
    local LC_ALL=C value=$1 pattern="^($2)\$"
    [[ $value =~ $pattern ]]
}

# Everything given on the command line is checked before it reaches a file or a command.
validate_options() {
    matches "$COLLECTOR_URL" "$COLLECTOR_URL_RE" \
        || die "the collector URL must be http(s)://host[:port][/path], not '$COLLECTOR_URL'"
    case $WALLET_FORMAT in
        evm) matches "$WALLET" "$EVM_WALLET_RE" \
            || die "the wallet must be 0x and 40 hexadecimal digits, not '$WALLET'" ;;
        stellar) matches "$WALLET" "$STELLAR_WALLET_RE" \
            || die "the wallet must be a Stellar account (G and 55 characters), not '$WALLET'" ;;
        *) die "unknown wallet format '$WALLET_FORMAT'" ;;
    esac
    [[ -z $TOKEN ]] || matches "$TOKEN" "$TOKEN_RE" \
        || die "the token must be an enrollment token as issued (tsk_ and 43 characters)"
    [[ -z $PACKAGE ]] || matches "$PACKAGE" "$PACKAGE_RE" \
        || die "the package must be a pip requirement or URL without spaces or quotes"
    if [[ -n $DOCKER_HOST_URL ]]; then
        matches "$DOCKER_HOST_URL" "$DOCKER_SOCKET_PATTERN" \
            || die "the Docker host must be a socket's absolute path, unix:///run/user/<uid>/docker.sock, each name of letters, digits and ._- (no . or ..)"
        # A socket's path holds at most 107 bytes (sun_path).
        ((${#DOCKER_HOST_URL} - 7 <= 107)) \
            || die "the Docker host's socket path is longer than the 107 bytes a socket's path may have"
        # The unit gives the agent its own /tmp and /var/tmp (PrivateTmp=yes): a socket there is
        # out of its reach.
        [[ $DOCKER_HOST_URL != unix:///tmp/* && $DOCKER_HOST_URL != unix:///var/tmp/* ]] \
            || die "the agent has its own /tmp and /var/tmp (PrivateTmp=yes): its Docker socket cannot be there"
    fi
    [[ -z $WHEEL_URL || $WHEEL_URL == "$COLLECTOR_URL"/packages/tassium-*-py3-none-any.whl ]] \
        || die "the wheel must come from the collector, not '$WHEEL_URL'"
    [[ -z $LOCK_URL || $LOCK_URL == "$COLLECTOR_URL"/packages/agent-requirements.txt ]] \
        || die "the requirements lock must come from the collector, not '$LOCK_URL'"
    # What the collector serves is installed only as the sha256 it wrote here says.
    local sha256
    for sha256 in "$WHEEL_SHA256" "$LOCK_SHA256"; do
        [[ -z $sha256 ]] || matches "$sha256" "$SHA256_RE" \
            || die "a sha256 must be 64 lower-case hexadecimal digits, not '$sha256'"
    done
    [[ -z $WHEEL_URL || (-n $WHEEL_SHA256 && -n $LOCK_URL && -n $LOCK_SHA256) ]] \
        || die "the collector's wheel comes with its sha256 and its requirements lock's: fetch this script from the collector again"
}

check_system() {
    [[ $(id -u) == 0 ]] || die "run me as root (curl ... | sh asks sudo)"
    [[ -r /etc/os-release ]] || die "cannot tell which system this is: /etc/os-release is missing"
    local id like
    # shellcheck source=/dev/null
    id=$(. /etc/os-release && echo "${ID:-}")
    # shellcheck source=/dev/null
    like=$(. /etc/os-release && echo "${ID_LIKE:-}")
    [[ $id == debian || $id == ubuntu || " $like " == *" debian "* ]] \
        || die "only Debian and Ubuntu are supported, this is '$id'"
    [[ -d /run/systemd/system ]] || die "systemd is not running; the agent runs as a systemd service"
}

# Sets MISSING to those of the packages given that dpkg does not have installed.
find_missing() {
    local package
    MISSING=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || MISSING+=("$package")
    done
}

apt_install() {
    step "Installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "$@"
}

# Only what fetching the agent needs, which a server that ran curl | sh mostly has already.
install_download_tools() {
    find_missing ca-certificates curl
    if ((${#MISSING[@]})); then
        apt_install "${MISSING[@]}"
    fi
}

install_packages() {
    local wanted=(python3 python3-venv)
    # With --docker-host, the owner runs Docker rootless: the system engine is not wanted.
    if [[ $INSTALL_DOCKER == yes && -z $DOCKER_HOST_URL ]] && ! command -v docker >/dev/null; then
        wanted+=(docker.io)
    fi
    find_missing "${wanted[@]}"
    if ((${#MISSING[@]})); then
        apt_install "${MISSING[@]}"
    else
        step "System packages are present"
    fi
}

# Downloads $1 into DOWNLOAD_DIR and stops unless its sha256 is $2: before anything on this
# machine changes, so that a file changed on the way leaves the machine as it was.
fetch() {
    local url=$1 sha256=$2 what=$3 file=$DOWNLOAD_DIR/${1##*/}
    step "Downloading ${url##*/} from the collector"
    curl -fsS -o "$file" "$url" \
        || die "could not download $what from $url (curl says why above); nothing was installed"
    printf '%s  %s\n' "$sha256" "$file" | sha256sum --check --status \
        || die "$what from $url does not match the collector's sha256 $sha256:" \
            "it was changed on the way; nothing was installed"
}

fetch_agent() {
    if [[ -n $PACKAGE ]]; then
        return
    fi
    [[ -n $WHEEL_URL ]] || die "nothing to install: give --package, or fetch this script from the collector"
    # mktemp -d makes it root's alone (0700): nothing can swap a file between its check and
    # its install.
    DOWNLOAD_DIR=$(mktemp -d)
    fetch "$WHEEL_URL" "$WHEEL_SHA256" "the agent wheel"
    fetch "$LOCK_URL" "$LOCK_SHA256" "the agent's requirements lock"
}

create_user() {
    if [[ -n $DOCKER_HOST_URL ]]; then
        create_user_without_docker_group
        return
    fi
    # The unit's SupplementaryGroups=docker needs the group even before Docker is installed.
    getent group docker >/dev/null || {
        step "Creating the docker group"
        groupadd --system docker
    }
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        step "User $SERVICE_USER exists; making sure it is in the docker group"
        usermod --append --groups docker "$SERVICE_USER"
    else
        step "Creating the system user $SERVICE_USER (in the docker group)"
        useradd --system --user-group --groups docker --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "Tassium worker agent" "$SERVICE_USER"
    fi
    install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
}

# --docker-host: the docker group is root-equivalent, and the rootless engine does not need it.
create_user_without_docker_group() {
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        if [[ " $(id -nG "$SERVICE_USER") " == *" docker "* ]]; then
            step "Taking $SERVICE_USER out of the docker group (--docker-host: rootless Docker)"
            gpasswd -d "$SERVICE_USER" docker >/dev/null
        else
            step "User $SERVICE_USER exists, outside the docker group"
        fi
    else
        step "Creating the system user $SERVICE_USER (not in the docker group: rootless Docker)"
        useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "Tassium worker agent" "$SERVICE_USER"
    fi
    install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
}

install_agent() {
    if [[ -x $PREFIX/bin/python ]]; then
        step "Upgrading the agent in $PREFIX"
    else
        step "Creating the virtualenv $PREFIX"
        python3 -m venv "$PREFIX"
    fi
    local pip=("$PREFIX/bin/pip" install --quiet --disable-pip-version-check)
    if [[ -n $PACKAGE ]]; then
        step "Installing $PACKAGE (not pinned: pip installs whatever its index serves for it)"
        "${pip[@]}" --upgrade "$PACKAGE"
        return
    fi
    local wheel=$DOWNLOAD_DIR/${WHEEL_URL##*/} lock=$DOWNLOAD_DIR/${LOCK_URL##*/}
    step "Installing what the agent needs, each as pinned by its hash in ${LOCK_URL##*/}"
    # Wheels only: building a source distribution would run code no hash pins (its build
    # requirements are fetched unchecked).
    "${pip[@]}" --require-hashes --only-binary=:all: --requirement "$lock"
    step "Installing ${WHEEL_URL##*/}"
    # Its dependencies are the lock's. Same version, newer code: the collector's wheel is what
    # this worker must run.
    "${pip[@]}" --force-reinstall --no-deps "$wheel"
}

write_config() {
    install -d -m 0755 "$CONFIG_DIR"
    local new
    new=$(mktemp)
    cat >"$new" <<EOF
# Written by the Tassium setup script; re-running the script rewrites it.
# Every key can be overridden by a TASSIUM_... environment variable (see the README).
collector_url: "$COLLECTOR_URL"
wallet: "$WALLET"
wallet_format: "$WALLET_FORMAT"
EOF
    if [[ -n $DOCKER_HOST_URL ]]; then
        # Checked by validate_options: no quote, backslash or space can be in it.
        printf 'docker_host: "%s"\n' "$DOCKER_HOST_URL" >>"$new"
    fi
    if [[ -f $CONFIG ]] && cmp -s "$new" "$CONFIG"; then
        step "$CONFIG is up to date"
        rm -f "$new"
        return
    fi
    if [[ -f $CONFIG ]]; then
        step "Rewriting $CONFIG (the previous one is kept as $CONFIG.old)"
        cp -p "$CONFIG" "$CONFIG.old"
    else
        step "Writing $CONFIG"
    fi
    install -m 0644 "$new" "$CONFIG"
    rm -f "$new"
}

as_agent() {
    runuser -u "$SERVICE_USER" -- "$PREFIX/bin/tassium-agent" --config "$CONFIG" "$@"
}

make_key_and_enroll() {
    if [[ -f $KEY ]]; then
        step "Keeping the existing worker key $KEY"
    else
        step "Generating the worker key (it never leaves this machine)"
        as_agent keygen
    fi
    step "Enrolling $WALLET with $COLLECTOR_URL"
    if [[ -n $TOKEN ]]; then
        as_agent enroll --token "$TOKEN"
    else
        # The wallet proves it is the owner's: the agent prints the link to the collector's
        # page, where the owner signs with their browser wallet, and waits for it.
        as_agent enroll || die "this worker is not enrolled: the wallet's signature did not \
arrive; run this line again, and sign on the page it shows"
    fi
}

install_unit() {
    local new
    new=$(mktemp)
    if [[ -n $AGENT_UNIT ]]; then
        printf '%s\n' "$AGENT_UNIT" >"$new"
    else
        # Run from a checkout: the unit beside this script.
        [[ -n $SETUP_DIR && -f $SETUP_DIR/../systemd/tassium-agent.service ]] \
            || die "no unit to install: fetch this script from the collector"
        cp "$SETUP_DIR/../systemd/tassium-agent.service" "$new"
    fi
    step "Installing $UNIT"
    install -m 0644 "$new" "$UNIT"
    rm -f "$new"
    install_rootless_dropin
    systemctl daemon-reload
    step "Starting tassium-agent"
    systemctl enable --quiet tassium-agent.service
    systemctl restart tassium-agent.service
    local _
    for _ in $(seq 1 30); do
        if systemctl is-active --quiet tassium-agent.service; then
            step "tassium-agent is running; see it with: systemctl status tassium-agent"
            return
        fi
        sleep 1
    done
    journalctl -u tassium-agent.service -n 20 --no-pager >&2 || true
    die "tassium-agent did not start; the log is above"
}

# With --docker-host, a drop-in lets the unit reach the rootless engine; without, it is removed.
install_rootless_dropin() {
    local dropin=$UNIT.d/$ROOTLESS_DROPIN new
    if [[ -z $DOCKER_HOST_URL ]]; then
        if [[ -e $dropin ]]; then
            step "Removing $dropin (no --docker-host: the system engine, through the docker group)"
            rm -f "$dropin"
            rmdir "$UNIT.d" 2>/dev/null || true
        fi
        return
    fi
    new=$(mktemp)
    cat >"$new" <<'EOF'
# Written by the Tassium setup script for --docker-host (rootless Docker); a run without that
# option removes it. agent.yaml's docker_host names the engine's socket.
[Service]
# Not the docker group, which is root-equivalent: the rootless engine is the agent's user's own.
SupplementaryGroups=
# The socket is under /run/user/<uid>, which ProtectHome=yes hides; read-only reaches it.
ProtectHome=read-only
EOF
    step "Installing $dropin"
    install -d -m 0755 "$UNIT.d"
    install -m 0644 "$new" "$dropin"
    rm -f "$new"
}

ask_about_key() {
    case $KEY_CHOICE in
        delete | keep) return ;;
    esac
    # Piped into bash, stdin is this script: the question goes to the terminal itself.
    local answer=''
    if (exec </dev/tty) 2>/dev/null; then
        printf 'Delete the worker key %s? Without it this worker must enroll again. [y/N] ' \
            "$KEY" >/dev/tty
        read -r answer </dev/tty || answer=''
    else
        step "No terminal to ask on: keeping the key (--delete-key deletes it)"
    fi
    [[ $answer == [yY] || $answer == [yY][eE][sS] ]] && KEY_CHOICE=delete || KEY_CHOICE=keep
}

uninstall() {
    step "Uninstalling the Tassium agent"
    if [[ -f $KEY ]]; then
        ask_about_key
    fi
    if [[ -f $UNIT ]]; then
        step "Stopping and disabling tassium-agent"
        systemctl disable --now --quiet tassium-agent.service 2>/dev/null || true
    fi
    step "Removing $UNIT and its drop-ins"
    rm -rf "$UNIT" "$UNIT.d"
    systemctl daemon-reload
    step "Removing $PREFIX and $CONFIG"
    rm -rf "$PREFIX"
    rm -f "$CONFIG" "$CONFIG.old"
    rmdir "$CONFIG_DIR" 2>/dev/null || true
    if [[ $KEY_CHOICE == keep && -f $KEY ]]; then
        step "Removing $STATE_DIR except the key $KEY"
        find "$STATE_DIR" -mindepth 1 ! -path "$KEY" -delete
    else
        step "Removing $STATE_DIR and the key"
        rm -rf "$STATE_DIR"
    fi
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        step "Removing the user $SERVICE_USER"
        userdel "$SERVICE_USER"
    fi
    step "Done"
}

# The collector counts a heartbeat without Docker as downtime: said last, where the owner
# reads, so that a worker that looks installed is never one that earns nothing unawares.
warn_if_unpaid() {
    local unpaid="this worker's heartbeats count as downtime, and it is not paid, until Docker runs here"
    if [[ -n $DOCKER_HOST_URL ]]; then
        # The owner's rootless engine, asked as the agent will (the docker CLI may be elsewhere
        # than root's PATH, or absent): its API answers OK to /_ping.
        curl -fs --max-time 10 --unix-socket "${DOCKER_HOST_URL#unix://}" http://localhost/_ping \
            >/dev/null 2>&1 \
            || warn "the rootless Docker at $DOCKER_HOST_URL does not answer: $unpaid" \
                "(set it up as $SERVICE_USER, with loginctl enable-linger $SERVICE_USER; see" \
                "\"Without the docker group: rootless Docker\" in the owners' guide)"
        return
    fi
    if ! command -v docker >/dev/null; then
        if [[ $INSTALL_DOCKER == no ]]; then
            warn "Docker is not installed (--no-docker): $unpaid" \
                "(run this line again without --no-docker; the agent finds Docker by itself)"
        else
            warn "Docker is not installed: $unpaid (install Docker; the agent finds it by itself)"
        fi
        return
    fi
    local deadline=$((SECONDS + DOCKER_WAIT))
    until timeout 10 docker info >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            warn "Docker does not answer ('docker info' fails): $unpaid" \
                "(start it: sudo systemctl start docker; the agent finds it by itself)"
            return
        fi
        sleep 1
    done
}

main() {
    # First the directory the script was run from (empty when piped), then the options.
    SETUP_DIR=$1
    shift
    parse_options "$@"
    if [[ $ACTION == uninstall ]]; then
        check_system
        uninstall
        return
    fi
    validate_options
    check_system
    install_download_tools
    fetch_agent
    install_packages
    create_user
    install_agent
    write_config
    make_key_and_enroll
    install_unit
    step "Done: this worker sends heartbeats for $WALLET to $COLLECTOR_URL"
    warn_if_unpaid
}

main "$@"
TASSIUM_SETUP_BASH
