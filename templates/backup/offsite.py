"""Copies of the nightly dumps off the db host (ops/render/backup.py): into the pgBackRest
repository's bucket on the backup host, under `<repo path>/dumps/<database>/`, each file
encrypted before it leaves the host (openssl enc, AES-256-CBC, PBKDF2) with the repository's
passphrase, so losing the db host loses neither line of backup.

Runs inside a one-off container of the postgres image (pg_backup.sh), as root: it reads the
0700 dump directory and the 0600 pgBackRest config (endpoint, bucket, keys, the pinned
certificate, the passphrase). Python's standard library only: S3 requests signed with AWS
Signature V4 over HTTPS, verified against the pinned certificate.

    offsite.py sync <database> <dir> <keep daily> <keep weekly>
                                            upload what is missing (only complete backups),
                                            then apply pg_backup.sh's retention rule to the
                                            copies and the backups here together

    offsite.py list <database>              the copies, one name a line
    offsite.py get <database> <name> <out> [--encrypted]
                                            download one file and decrypt it (the runbook),
                                            or keep it as stored
"""

import configparser
import datetime as dt
import hashlib
import hmac
import http.client
import os
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.parse
import xml.etree.ElementTree as ET

CONF = "/etc/pgbackrest/pgbackrest.conf"
SAFE = "-_.~"


class S3:
    def __init__(self, conf: configparser.SectionProxy):
        self.host, self.port = conf["repo1-s3-endpoint"], int(conf["repo1-storage-port"])
        self.bucket, self.region = conf["repo1-s3-bucket"], conf["repo1-s3-region"]
        self.key, self.secret = conf["repo1-s3-key"], conf["repo1-s3-key-secret"]
        self.tls = ssl.create_default_context(cafile=conf["repo1-storage-ca-file"])

    def request(self, method: str, key: str = "", query: dict | None = None,
                upload: str | None = None, save_to: str | None = None) -> tuple[int, bytes]:
        """One signed request. Dumps can be large: `upload` is a file streamed as the body,
        and a successful answer is streamed into `save_to`."""
        path = "/" + urllib.parse.quote(f"{self.bucket}/{key}" if key else self.bucket,
                                        safe="/" + SAFE)
        query = query or {}
        now = dt.datetime.now(dt.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(b"").hexdigest()
        if upload:
            digest = hashlib.sha256()
            with open(upload, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            payload = digest.hexdigest()
        headers = {"host": f"{self.host}:{self.port}", "x-amz-content-sha256": payload,
                   "x-amz-date": stamp}
        signed = ";".join(sorted(headers))
        canonical_query = "&".join(f"{urllib.parse.quote(k, safe=SAFE)}="
                                   f"{urllib.parse.quote(v, safe=SAFE)}"
                                   for k, v in sorted(query.items()))
        canonical = "\n".join([method, path, canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                               signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        k = f"AWS4{self.secret}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.tls, timeout=120)
        url = path + (f"?{canonical_query}" if query else "")
        try:
            if upload:
                headers["Content-Length"] = str(os.path.getsize(upload))
                with open(upload, "rb") as f:
                    conn.request(method, url, f, headers)
            else:
                conn.request(method, url, None, headers)
            res = conn.getresponse()
            if save_to and res.status < 300:
                with open(save_to, "wb") as out:
                    for chunk in iter(lambda: res.read(1 << 20), b""):
                        out.write(chunk)
                return res.status, b""
            return res.status, res.read()
        finally:
            conn.close()

    def must(self, method: str, key: str = "", **kw) -> bytes:
        status, data = self.request(method, key, **kw)
        if status >= 300:
            raise SystemExit(f"offsite: {method} s3://{self.bucket}/{key} on {self.host}: "
                             f"HTTP {status} {data[:200]!r}")
        return data

    def keys(self, prefix: str) -> list[str]:
        found, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            # our own endpoint, its certificate pinned; expat refuses entity expansion bombs
            root = ET.fromstring(self.must("GET", query=query))  # noqa: S314
            for el in root.iter():
                tag = el.tag.rsplit("}", 1)[-1]
                if tag == "Key":
                    found.append(el.text or "")
            more = [el.text for el in root.iter() if el.tag.endswith("NextContinuationToken")]
            if not more:
                return found
            token = more[0]


def openssl(passphrase: str, decrypt: bool, src: str, dst: str) -> None:
    """AES-256-CBC with PBKDF2; the passphrase through a pipe, never on a command line."""
    r, w = os.pipe()
    os.write(w, passphrase.encode())
    os.close(w)
    argv = ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-iter", "100000", "-salt",
            "-in", src, "-out", dst, "-pass", f"fd:{r}"] + (["-d"] if decrypt else [])
    try:
        subprocess.run(argv, check=True, pass_fds=(r,), capture_output=True)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"offsite: openssl {'decryption' if decrypt else 'encryption'} of "
                         f"{src} failed: {e.stderr.decode(errors='replace').strip()[-200:]}"
                         ) from None
    finally:
        os.close(r)


def complete_backups(directory: str, database: str) -> list[str]:
    """Files of every complete backup here: manifest, checksum and the dump it names."""
    files = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(f"{database}-") and name.endswith(".manifest"):
            with open(os.path.join(directory, name)) as f:
                fields = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
            base = name[: -len(".manifest")]
            files += [fields["file"], f"{base}.sha256", name]
    return files


STAMP = re.compile(r"-(\d{8}T\d{6}Z)\.")


def retained(stamps: set[str], keep_daily: int, keep_weekly: int) -> set[str]:
    """pg_backup.sh's retention rule (and ops/backup/manifest.py `select_retained`): the newest
    backup of each of the last `keep_daily` days and `keep_weekly` ISO weeks that have one.

    Applied to the copies and the backups here together, never to "what is not here": a db
    host rebuilt empty, or the db role moved to another host, must not delete the copies of
    every older backup at its first dump, when they are the only ones left."""
    keep, days, weeks, last_day, last_week = set(), 0, 0, None, None
    for stamp in sorted(stamps, reverse=True):
        day = stamp[:8]
        week = dt.datetime.strptime(day, "%Y%m%d").strftime("%G-W%V")
        kept = False
        if day != last_day and days < keep_daily:
            kept, days, last_day = True, days + 1, day
        if week != last_week and weeks < keep_weekly:
            kept, weeks, last_week = True, weeks + 1, week
        if kept:
            keep.add(stamp)
    return keep


def stamp_of(name: str) -> str | None:
    match = STAMP.search(name)
    return match.group(1) if match else None


def main() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(CONF)
    conf = parser["global"]
    s3 = S3(conf)
    command, database = sys.argv[1], sys.argv[2]
    prefix = f"{conf['repo1-path'].strip('/')}/dumps/{database}/"
    if command == "list":
        print("\n".join(k[len(prefix):] for k in s3.keys(prefix)))
        return
    if command == "get":
        name, out = sys.argv[3], sys.argv[4]
        if sys.argv[5:] == ["--encrypted"]:
            s3.must("GET", f"{prefix}{name}.enc", save_to=out)
            return
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(out) or ".") as tmp:
            s3.must("GET", f"{prefix}{name}.enc", save_to=tmp.name)
            openssl(conf["repo1-cipher-pass"], True, tmp.name, out)
        return
    directory, keep_daily, keep_weekly = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    wanted = complete_backups(directory, database)
    present = {k[len(prefix):] for k in s3.keys(prefix)}
    uploaded = deleted = 0
    for name in wanted:  # manifest last: a copy is complete once its manifest is there
        if f"{name}.enc" in present:
            continue
        with tempfile.NamedTemporaryFile() as tmp:
            openssl(conf["repo1-cipher-pass"], False, os.path.join(directory, name), tmp.name)
            s3.must("PUT", f"{prefix}{name}.enc", upload=tmp.name)
        uploaded += 1
    stamps = {s for s in map(stamp_of, [*wanted, *present]) if s}
    keep = retained(stamps, keep_daily, keep_weekly)
    for name in sorted(present - {f"{n}.enc" for n in wanted}):
        if stamp_of(name) in keep or stamp_of(name) is None:
            continue  # a copy retention keeps (or not a backup's: not this tool's to delete)
        s3.must("DELETE", f"{prefix}{name}")
        deleted += 1
    print(f"offsite: {database}: {uploaded} uploaded, {deleted} deleted, "
          f"{len(wanted)} file(s) of complete backups")


main()
