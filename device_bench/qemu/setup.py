"""`setup_arm`: everything the QEMU target needs, built once and cached under `cache_dir("arm")`.

Why each part:
- Debian's dynamic `qemu-user` (QEMU 7.2) loads TCG plugins; no Debian package ships plugin .so files, so
  the project builds its own (`plugin/insn_count.c`) against `qemu-plugin.h` taken from Debian's qemu source
  package, fetched through a PRIVATE apt configuration (the host's apt sources are never edited).
- An aarch64 Debian sysroot (mmdebstrap, extract variant: no chroot, no binfmt) holds Python 3.11; the
  host's pip installs the aarch64 `ai-edge-litert` and numpy wheels into it, pinned to the host's versions
  so guest and host run the same kernels. Their .pyc files are compiled by the host when it runs 3.11 too
  (bytecode is architecture-independent), which saves every emulated run the compilation.
- One small directory per CPU profile links to the sysroot and adds its own `proc/cpuinfo` and
  `sys/devices/system/cpu/{possible,present,online}`: with `-L DIR`, QEMU takes a file from DIR when it
  exists there, so concurrent runs on different profiles never swap a shared file.

A manifest (`setup.json`) records the result; a second run checks stamps and takes about a second.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from .cpuinfo import PROFILES
from .errors import QemuSetupError

DEB_PACKAGES = ("qemu-user", "mmdebstrap", "libglib2.0-dev", "gcc", "pkg-config", "dpkg-dev")
GUEST_PYTHON = "usr/bin/python3.11"
GUEST_SITE = "opt/site"
WHEELS = ("ai-edge-litert", "numpy")
MANIFEST = "setup.json"
PLUGIN_SOURCE = Path(__file__).with_name("plugin") / "insn_count.c"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def arm_cache() -> Path:
    try:
        from edge_lowrank.paths import cache_dir
    except ImportError:  # device_bench alone: the same rule as edge_lowrank.paths
        root = os.environ.get("EDGE_LOWRANK_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge-lowrank")
        path = Path(root, "arm")
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
    return cache_dir("arm").resolve()  # absolute: the manifest and the profile links must not depend on the cwd


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(f"setup-arm: {msg}", file=sys.stderr, flush=True)


def _run(cmd, what: str, **kw) -> subprocess.CompletedProcess:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise QemuSetupError(f"{what}: `{cmd[0]}` is not installed.") from None
    if p.returncode != 0:
        tail = " ".join((p.stderr or p.stdout or "").strip().splitlines()[-2:])[-300:]
        raise QemuSetupError(f"{what} failed (exit {p.returncode}): {tail}")
    return p


def _dpkg_installed(pkg: str) -> bool:
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return p.returncode == 0 and "install ok installed" in p.stdout


def ensure_packages(verbose: bool) -> None:
    """Install the Debian packages (root only); without root, name the missing ones."""
    if shutil.which("dpkg-query") is None:
        raise QemuSetupError("setup-arm needs a Debian-based system (dpkg and apt).")
    missing = [p for p in DEB_PACKAGES if not _dpkg_installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise QemuSetupError(f"Missing Debian packages: {' '.join(missing)}. Run as root, or "
                             f"`sudo apt-get install {' '.join(missing)}` first.")
    _log(verbose, f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], "apt-get install", env=env)


def qemu_binary() -> str:
    path = shutil.which("qemu-aarch64")
    if path is None:
        raise QemuSetupError("qemu-aarch64 is not installed (Debian package qemu-user).")
    return path


def qemu_version(qemu: str) -> str:
    out = _run([qemu, "--version"], "qemu-aarch64 --version").stdout
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    if not m:
        raise QemuSetupError(f"Cannot read the QEMU version from: {out.strip()[:100]}")
    return m.group(1)


def qemu_cpus(qemu: str) -> set[str]:
    # QEMU 7.2 lists the models and then exits with status 1: read the list, not the status.
    out = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def host_mirror() -> tuple[str, str]:
    """(Debian mirror URL, release codename) the host's apt uses, so mmdebstrap and apt-get source reach it."""
    codename = "bookworm"
    try:
        m = re.search(r"^VERSION_CODENAME=(\w+)", Path("/etc/os-release").read_text(), re.M)
        codename = m.group(1) if m else codename
    except OSError:
        pass
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list")),
             *sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]
    for f in files:
        try:
            text = Path(f).read_text()
        except OSError:
            continue
        for url in re.findall(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.M):
            if "/debian" in url and "security" not in url and "debian-ports" not in url:
                return url.rstrip("/"), codename
    return DEFAULT_MIRROR, codename


def fetch_plugin_header(cache: Path, qemu_pkg_version: str, verbose: bool) -> Path:
    """`qemu-plugin.h` matching the installed QEMU, from Debian's qemu source package (cached)."""
    key = re.sub(r"[^\w.+-]", "_", qemu_pkg_version)
    header = cache / "qemu-include" / key / "qemu-plugin.h"
    if header.exists():
        return header
    mirror, codename = host_mirror()
    apt = cache / "apt"
    for d in ("lists/partial", "cache/archives/partial", "src"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    signed = f"[signed-by={keyring}] " if os.path.exists(keyring) else ""
    sec = mirror.rsplit("/", 1)[0] + "/debian-security" if mirror.endswith("/debian") else None
    lines = [f"deb-src {signed}{mirror} {codename} main", f"deb-src {signed}{mirror} {codename}-updates main"]
    if sec:
        lines.append(f"deb-src {signed}{sec} {codename}-security main")
    (apt / "sources.list").write_text("\n".join(lines) + "\n")
    opts = ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
            "-o", "APT::Sandbox::User=root", "-qq"]
    _log(verbose, f"fetching qemu {qemu_pkg_version} source (for qemu-plugin.h) from {mirror}")
    _run(["apt-get", *opts, "update"], "apt-get update (private deb-src configuration)")
    src = apt / "src"
    for f in src.iterdir():
        f.unlink()
    p = subprocess.run(["apt-get", *opts, "source", "--download-only", f"qemu={qemu_pkg_version}"], cwd=src,
                       capture_output=True, text=True)
    if p.returncode != 0:  # that exact version left the mirror: the header only changes with the upstream version
        _run(["apt-get", *opts, "source", "--download-only", "qemu"], "apt-get source qemu", cwd=src)
    tarballs = sorted(src.glob("qemu_*.orig.tar.*"))
    if not tarballs:
        raise QemuSetupError("apt-get source qemu gave no .orig tarball.")
    with tarfile.open(tarballs[0], "r|*") as tar:
        for member in tar:  # stream: the header is near the start of the ~24 MB tarball
            if member.name.endswith("/include/qemu/qemu-plugin.h"):
                data = tar.extractfile(member).read()
                break
        else:
            raise QemuSetupError(f"{tarballs[0].name} has no include/qemu/qemu-plugin.h.")
    for f in src.iterdir():
        f.unlink()
    header.parent.mkdir(parents=True, exist_ok=True)
    tmp = header.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(header)
    return header


def build_plugin(cache: Path, header: Path, verbose: bool) -> Path:
    """Compile `insn_count.c` into a .so named by the hash of its source and header (rebuilt on change)."""
    digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes() + header.read_bytes()).hexdigest()[:12]
    so = cache / "plugin" / f"insn_count-{digest}.so"
    if so.exists():
        return so
    so.parent.mkdir(parents=True, exist_ok=True)
    glib = _run(["pkg-config", "--cflags", "glib-2.0"], "pkg-config glib-2.0 (Debian libglib2.0-dev)").stdout.split()
    _log(verbose, "building the instruction-count plugin")
    tmp = so.with_suffix(".tmp.so")
    _run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-o", str(tmp), f"-I{header.parent}", *glib,
          str(PLUGIN_SOURCE)], "gcc (building the QEMU plugin)")
    tmp.replace(so)
    return so


def _pinned(name: str) -> str:
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def build_sysroot(cache: Path, verbose: bool) -> tuple[Path, dict]:
    """The aarch64 sysroot with Python 3.11 and the pinned wheels in /opt/site; returns (path, versions)."""
    mirror, codename = host_mirror()
    sysroot = cache / f"sysroot-{codename}-arm64"
    if not (sysroot / GUEST_PYTHON).exists():
        _log(verbose, f"creating the aarch64 sysroot ({codename}, {mirror})")
        tmp = cache / f".{sysroot.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _run(["mmdebstrap", "--quiet", "--arch=arm64", "--variant=extract", "--include=python3.11,libstdc++6",
              codename, str(tmp), mirror], "mmdebstrap (aarch64 sysroot)")
        shutil.rmtree(sysroot, ignore_errors=True)
        tmp.rename(sysroot)
    wanted = [_pinned(w) for w in WHEELS]
    stamp = sysroot / GUEST_SITE / ".edge-lowrank-wheels"
    if not stamp.exists() or stamp.read_text().split() != wanted:
        _log(verbose, f"installing aarch64 wheels: {' '.join(wanted)}")
        site = sysroot / GUEST_SITE
        shutil.rmtree(site, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-warn-script-location",
              "--target", str(site), "--platform", "manylinux_2_27_aarch64", "--python-version", "3.11",
              "--implementation", "cp", "--only-binary=:all:", *wanted], "pip install (aarch64 wheels)")
        if sys.version_info[:2] == (3, 11):
            _log(verbose, "compiling the guest's .pyc files on the host")
            subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(site),
                            str(sysroot / "usr/lib/python3.11")], capture_output=True)
        stamp.write_text(" ".join(wanted))
    return sysroot, {w.split("==")[0]: (w.split("==") + ["?"])[1] for w in wanted}


def build_profiles(cache: Path, sysroot: Path, qemu: str) -> dict:
    """One directory per profile: symlinks to the sysroot plus that core's proc/cpuinfo and CPU count."""
    known = qemu_cpus(qemu)
    out = {}
    root = cache / "profiles"
    root.mkdir(exist_ok=True)
    for name, prof in PROFILES.items():
        cpu = next((c for c in prof.qemu_cpu if c.split(",")[0] in known), None)
        if cpu is None:
            continue
        d = root / name
        stamp = {"qemu_cpu": cpu, "sysroot": str(sysroot.resolve()), "cpuinfo": prof.cpuinfo()}
        try:
            if json.loads((d / ".profile.json").read_text()) == stamp:  # unchanged: leave it (runs may use it)
                out[name] = {"dir": str(d), "qemu_cpu": cpu, "part": f"0x{prof.part:03x}"}
                continue
        except (OSError, ValueError):
            pass
        tmp = root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for entry in sysroot.iterdir():
            if entry.name not in ("proc", "sys", "tmp"):
                (tmp / entry.name).symlink_to(entry.resolve())
        (tmp / "proc").mkdir()
        (tmp / "proc" / "cpuinfo").write_text(prof.cpuinfo())
        cpus = tmp / "sys" / "devices" / "system" / "cpu"
        cpus.mkdir(parents=True)
        for f in ("possible", "present", "online"):
            (cpus / f).write_text("0\n")
        _run([qemu, "-cpu", cpu, "-L", str(tmp), str(tmp / GUEST_PYTHON), "-S", "-c", "pass"],
             f"qemu-aarch64 -cpu {cpu} (profile {name})")
        (tmp / ".profile.json").write_text(json.dumps(stamp))
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
        out[name] = {"dir": str(d), "qemu_cpu": cpu, "part": f"0x{prof.part:03x}"}
    return out


def setup_arm(force: bool = False, verbose: bool = True) -> dict:
    """Install and build what `run_qemu` needs; idempotent, cached under `cache_dir("arm")`.

    Args:
        force: rebuild the sysroot, the header and the plugin even when cached.
        verbose: print one line per step that does work (stderr).

    Returns:
        The manifest: qemu path and version, plugin, sysroot, guest python, profiles, wheel versions, seconds.

    Raises:
        QemuSetupError: a step failed (message names it and how to fix it).
    """
    t0 = time.perf_counter()
    cache = arm_cache()
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force:
            for name in ("plugin", "qemu-include", "profiles", *(p.name for p in cache.glob("sysroot-*"))):
                shutil.rmtree(cache / name, ignore_errors=True)
        ensure_packages(verbose)
        qemu = qemu_binary()
        version = qemu_version(qemu)
        p = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", "qemu-user"], capture_output=True, text=True)
        pkg_version = p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else version
        header = fetch_plugin_header(cache, pkg_version, verbose)
        plugin = build_plugin(cache, header, verbose)
        sysroot, wheels = build_sysroot(cache, verbose)
        profiles = build_profiles(cache, sysroot, qemu)
        manifest = {"qemu": qemu, "qemu_version": version, "qemu_package": pkg_version, "plugin": str(plugin),
                    "sysroot": str(sysroot), "python": GUEST_PYTHON, "site": "/" + GUEST_SITE,
                    "wheels": wheels, "profiles": profiles, "setup_s": round(time.perf_counter() - t0, 2)}
        tmp = cache / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(cache / MANIFEST)
    _log(verbose, f"ready in {manifest['setup_s']:.1f} s: QEMU {version}, profiles {', '.join(profiles)} "
                  f"(cache {cache})")
    return manifest


def load_manifest() -> dict | None:
    """The last setup's manifest if everything it names still exists, else None."""
    path = arm_cache() / MANIFEST
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    needed = [m["qemu"], m["plugin"], os.path.join(m["sysroot"], m["python"])]
    needed += [p["dir"] for p in m["profiles"].values()]
    return m if all(os.path.exists(p) for p in needed) else None
