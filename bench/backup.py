"""Backup/restore benchmark: our pipeline against plain tools on the same machine and S3 server.

    .venv/bin/python bench/backup.py [--sizes 256,1024] [--workdir /var/tmp/sfp-bench] [--skip-pgbackrest]

For each database size (MiB) a PostgreSQL 15 cluster is built once under --workdir (reused on
later runs) with generate_series data, then, side by side:
  backup   ours (run_backup: pg_dump -Fc -Z0 | zstd | age | multipart upload, in a child process
           whose peak RSS is measured) vs `pg_dump -Fc | boto3 upload_fileobj` to the same
           `rclone serve s3`; goal ratio <= 1.0
  pgBackRest  full backup of the same cluster to the same S3 server (TLS, path style), as a reference
  restore  ours (restore_set into a fresh cluster: parallel download and check, then schema and
           data restored from the decrypting stream, post-data with pg_restore -j) vs `pg_restore -j` from a local
           pg_dump -Fc file into a fresh cluster; goal ratio <= 1.3
Not run in CI.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from installer.backup import Trust, api, generate_recovery_key, generate_signing_key, s3  # noqa: E402
from tests.backup.support import (  # noqa: E402
    ACCESS_KEY,
    PG_BINDIR,
    SECRET_KEY,
    PgCluster,
    RcloneS3,
    free_port,
    rclone_binary,
    wait_port,
)

JOBS = max(1, min(4, os.cpu_count() or 1))


def build(cluster: PgCluster, mib: int) -> None:
    """A `bench` database of about `mib` MiB: mixed columns, text that compresses like real data, an index."""
    have = cluster.psql("SELECT coalesce(sum(pg_database_size(datname)), 0) FROM pg_database WHERE datname = 'bench'").strip()
    if have and int(have) >= mib * 1024 * 1024 * 0.9:
        return
    cluster.psql("DROP DATABASE IF EXISTS bench; CREATE DATABASE bench;")
    rows = mib * 1024 * 1024 // 200  # ~200 bytes per row on disk, index included
    cluster.psql(f"""
        CREATE TABLE events (id bigint PRIMARY KEY, account int, kind text, amount numeric(12,2),
                             at timestamptz, note text, payload jsonb);
        INSERT INTO events SELECT i, i % 10007, (ARRAY['login','purchase','refund','logout'])[1 + i % 4],
               (i % 100000) / 100.0, timestamptz '2024-01-01' + i * interval '1 second',
               md5(i::text) || ' ' || md5((i * 7)::text),
               jsonb_build_object('ip', '10.0.' || (i % 256) || '.' || (i % 251), 'ok', i % 3 = 0)
        FROM generate_series(1, {rows}) AS i;
        CREATE INDEX events_account ON events (account, at);
        VACUUM ANALYZE events;
    """, "bench")


def timed(fn: Any) -> tuple[float, Any]:
    t = time.monotonic()
    out = fn()
    return time.monotonic() - t, out


def ours_backup_child(store: Any, recipient: str, signing_key: str, cluster: PgCluster) -> tuple[float, int, str]:
    """run_backup in a child process: (seconds, peak RSS KiB of the child, set id)."""
    spec = {"store": {k: v for k, v in store.__dict__.items()}, "recipient": recipient, "jobs": JOBS, "signing_key": signing_key,
            "database": {"host": "127.0.0.1", "port": cluster.port, "user": "postgres", "password_env": cluster.password_env,
                         "bindir": str(PG_BINDIR)}}
    code = (
        "import json,sys\nfrom pathlib import Path\nfrom installer.backup import api\n"
        "from installer.backup.config import BackupSettings, ObjectStore\nfrom installer.backup.db import LocalDatabase\n"
        "s=json.loads(sys.argv[1]); st=BackupSettings(store=ObjectStore(**s['store']), recipient=s['recipient'], jobs=s['jobs'])\n"
        "d=s['database']; db=LocalDatabase(d['host'], d['port'], d['user'], d['password_env'], Path(d['bindir']))\n"
        "r=api.run_backup(st, 'bench', db, storage_dir=None, org_config={}, secrets={}, signing_key=s['signing_key'])\n"
        "print(r.set_id)\n"
    )
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], cwd=REPO, stdout=subprocess.PIPE)
    out = proc.stdout.read().decode().strip()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t
    if status != 0:
        raise SystemExit(f"our backup failed (status {status})")
    return seconds, usage.ru_maxrss, out


def baseline_backup(store: Any, cluster: PgCluster) -> float:
    cli = s3.client(store)
    t = time.monotonic()
    proc = subprocess.Popen([str(PG_BINDIR / "pg_dump"), "-Fc", "-d", "bench"], env=cluster.env(), stdout=subprocess.PIPE)
    cli.upload_fileobj(proc.stdout, store.bucket, f"baseline/{cluster.port}/bench.pgdump")
    if proc.wait() != 0:
        raise SystemExit("baseline pg_dump failed")
    return time.monotonic() - t


def tls_rclone(root: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A second rclone S3 server over the same root with a self-signed certificate (pgBackRest speaks only https)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (workdir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    port = free_port()
    proc = subprocess.Popen([rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
                             "--cert", str(workdir / "tls.crt"), "--key", str(workdir / "tls.key"), "--config", "/dev/null", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def pgbackrest_backup(cluster: PgCluster, port: int, bucket: str, workdir: Path) -> float | str:
    if not shutil.which("pgbackrest"):
        return "pgbackrest is not installed"
    conf = workdir / f"pgbackrest-{cluster.port}.conf"
    for sub in ("log", "lock", "spool"):
        (workdir / sub).mkdir(exist_ok=True)
        shutil.chown(workdir / sub, "postgres") if os.geteuid() == 0 else None
    conf.write_text(f"""[global]
repo1-type=s3
repo1-s3-endpoint=127.0.0.1
repo1-storage-port={port}
repo1-s3-bucket={bucket}
repo1-s3-key={ACCESS_KEY}
repo1-s3-key-secret={SECRET_KEY}
repo1-s3-region=us-east-1
repo1-s3-uri-style=path
repo1-storage-verify-tls=n
repo1-path=/pgbackrest-{cluster.port}
repo1-retention-full=1
compress-type=zst
process-max={JOBS}
log-path={workdir / 'log'}
lock-path={workdir / 'lock'}
spool-path={workdir / 'spool'}
archive-check=n
start-fast=y
log-level-console=warn

[bench]
pg1-path={cluster.data}
pg1-port={cluster.port}
pg1-socket-path={cluster.dir}
pg1-user=postgres
""")
    os.chmod(conf, 0o644)
    user = "postgres" if os.geteuid() == 0 else None
    env = {**os.environ, "PGPASSWORD": cluster.password}

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["pgbackrest", f"--config={conf}", "--stanza=bench", *args], user=user, env=env,
                              capture_output=True, check=False)

    created = run("stanza-create")
    if created.returncode != 0:
        return f"stanza-create failed: {created.stderr.decode()[-400:] or created.stdout.decode()[-400:]}"
    t = time.monotonic()
    done = run("backup", "--type=full")
    if done.returncode != 0:
        return f"backup failed: {done.stderr.decode()[-400:] or done.stdout.decode()[-400:]}"
    return time.monotonic() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,1024", help="database sizes in MiB, comma separated (largest is the main run)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/sfp-bench"))
    parser.add_argument("--skip-pgbackrest", action="store_true")
    parser.add_argument("--skip-restore", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(args.workdir, "postgres")
    s3root = Path(tempfile.mkdtemp(prefix="s3-", dir=args.workdir))
    server = RcloneS3(s3root)
    identity, recipient = generate_recovery_key()
    signing_key, public_key = generate_signing_key()
    store = server.store("bench")
    results: dict[str, Any] = {"cpus": os.cpu_count(), "jobs": JOBS, "sizes": {}}
    tls = None
    try:
        for mib in sizes:
            cluster = PgCluster(path=args.workdir / f"pg-{mib}")
            try:
                t, _ = timed(lambda c=cluster, m=mib: build(c, m))
                size = int(cluster.psql("SELECT pg_database_size('bench')").strip())
                row: dict[str, Any] = {"db_bytes": size, "build_seconds": round(t, 1)}
                print(f"\n== {mib} MiB target: database bench is {size / 2**20:.0f} MiB (built/reused in {t:.0f}s)", flush=True)
                row["ours_backup_s"], row["ours_peak_rss_kib"], set_id = ours_backup_child(store, recipient, signing_key, cluster)
                manifest = api.show_set(store, "bench", set_id, trust=Trust((public_key,)))
                row["ours_set_bytes"] = manifest.size
                row["baseline_backup_s"] = baseline_backup(store, cluster)
                row["backup_ratio"] = row["ours_backup_s"] / row["baseline_backup_s"]
                print(f"backup: ours {row['ours_backup_s']:.1f}s (set {manifest.size / 2**20:.0f} MiB, peak RSS "
                      f"{row['ours_peak_rss_kib'] / 1024:.0f} MiB) vs pg_dump -Fc|upload_fileobj {row['baseline_backup_s']:.1f}s "
                      f"→ ratio {row['backup_ratio']:.2f} (goal ≤ 1.0)", flush=True)
                if mib == sizes[-1] and not args.skip_pgbackrest:
                    if tls is None:
                        tls = tls_rclone(s3root, args.workdir)
                    outcome = pgbackrest_backup(cluster, tls[1], "bench", args.workdir)
                    row["pgbackrest"] = outcome
                    if isinstance(outcome, float):
                        print(f"pgBackRest full backup (zst, process-max={JOBS}, TLS): {outcome:.1f}s → ours/pgBackRest "
                              f"{row['ours_backup_s'] / outcome:.2f}", flush=True)
                    else:
                        print(f"pgBackRest could not run: {outcome}", flush=True)
                if mib == sizes[-1] and not args.skip_restore:
                    dump = args.workdir / f"bench-{mib}.pgdump"
                    subprocess.run([str(PG_BINDIR / "pg_dump"), "-Fc", "-d", "bench", "-f", str(dump)], env=cluster.env(), check=True)
                    base_target = PgCluster("bench-restore-base", base=args.workdir)
                    try:
                        base_target.psql("CREATE DATABASE bench")
                        row["baseline_restore_s"], _ = timed(lambda bt=base_target, d=dump: subprocess.run(
                            [str(PG_BINDIR / "pg_restore"), "-j", str(JOBS), "-d", "bench", str(d)], env=bt.env(), check=True))
                    finally:
                        base_target.destroy()
                        dump.unlink()
                    target = PgCluster("bench-restore-ours", base=args.workdir)
                    try:
                        row["ours_restore_s"], restored = timed(lambda tg=target, sid=set_id: api.restore_set(
                            store, "bench", sid, identity, tg.database(), trust=Trust((public_key,)), storage_dir=None, jobs=JOBS,
                            workdir=args.workdir))
                        row["ours_restore_phases"] = restored.timings
                    finally:
                        target.destroy()
                    row["restore_ratio"] = row["ours_restore_s"] / row["baseline_restore_s"]
                    print(f"restore: ours {row['ours_restore_s']:.1f}s (download+verify+decrypt+pg_restore -j {JOBS}) vs "
                          f"pg_restore -j {JOBS} from a local file {row['baseline_restore_s']:.1f}s → ratio "
                          f"{row['restore_ratio']:.2f} (goal ≤ 1.3); phases {row['ours_restore_phases']}", flush=True)
            finally:
                cluster.stop()
            results["sizes"][mib] = row
        rss = {m: r["ours_peak_rss_kib"] / 1024 for m, r in results["sizes"].items()}
        print("\npeak RSS of the backup process by database size: "
              + ", ".join(f"{m} MiB → {v:.0f} MiB" for m, v in rss.items()))
        print(json.dumps(results, indent=2, default=str))
    finally:
        if tls is not None:
            tls[0].terminate()
        server.stop()
        shutil.rmtree(s3root, ignore_errors=True)
        resource.getrusage(resource.RUSAGE_SELF)


if __name__ == "__main__":
    main()
