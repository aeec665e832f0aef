"""Stage 6 (optional): deliver verified DICOM outputs to a DICOM store.

Two protocols:

* DICOMweb STOW-RS (``--dicomweb URL``) through dicomweb-client.  The files are
  posted as they are on disk (``application/dicom`` parts, the file bytes
  themselves): nothing is decoded or re-encoded.
* DIMSE C-STORE (``--dimse HOST:PORT --aet OURS --aec THEIRS``) through
  pynetdicom.  The association proposes, for every SOP class, exactly the
  transfer syntaxes the files are in; the data set is streamed from the file
  (pynetdicom's chunked send), so frames are never transcoded.  A server that
  does not accept a file's transfer syntax gets nothing for that file, and the
  reason is recorded.

Only what verified clean is sent: during ``wsianon run`` the CLI calls
:meth:`Deliverer.deliver_slide` for a slide whose outcome is "ok" (verified and
placed in OUT); ``wsianon push OUT`` sends the slides that
``OUT/wsianon-report.json`` lists as verified ok, and refuses a file changed
after that report was written.

Delivery state lives in the job manifest beside OUT
(``OUT.parent / "OUT.wsianon-job.sqlite"``, mode 0600, table ``deliveries``):
one row per destination and SOP Instance UID with the state (sent/failed), the
server's response and timestamps.  An instance already acknowledged by a
destination (same file size and modification time) is not sent again, so a
re-run resends only what was not acknowledged.  A resend after a re-run with
the same key carries the same UIDs, so it is idempotent on the server.

Credentials never come from the command line: ``WSIANON_DICOMWEB_USER`` /
``WSIANON_DICOMWEB_PASSWORD`` or ``WSIANON_DICOMWEB_TOKEN``, else the
``[dicomweb]`` table of the delivery config file (TOML, mode 0600):
``--delivery-config FILE``, ``$WSIANON_DELIVERY_CONFIG`` or
``~/.config/wsianon/delivery.toml``.

Python API::

    from wsianon.pipeline.deliver import Destination, Deliverer, push_out
    dest = Destination.dicomweb("https://pacs.example.org/dicom-web")
    results = push_out(Path("out"), dest)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import stat
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from wsianon.io import digests as io_digests
from wsianon.io.safetext import human_bytes, os_reason
from wsianon.errors import WsianonError
from wsianon.pipeline.manifest import manifest_path, open_db  # one place decides where the job database lives
from wsianon.pipeline.report import REPORT_NAME

if TYPE_CHECKING:
    import requests

DEFAULT_CONFIG = Path.home() / ".config" / "wsianon" / "delivery.toml"
DEFAULT_BATCH_BYTES = 64 << 20  # STOW-RS request size when no limit is given (memory bound)
RETRY_AFTER_S = 60  # after the store was unreachable, slides in the next minute do not try again


class DeliveryError(WsianonError):
    """A delivery cannot start (bad destination, credentials, unreadable OUT)."""


class Unavailable(Exception):
    """The destination cannot be reached (connection refused, association rejected, ...).
    Its text is always our own wording (never a library's message)."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "destination unavailable"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def parse_size(text: str) -> int:
    """'500M', '2G', '1048576' -> bytes."""
    t = text.strip().upper().removesuffix("B")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (examples: 500M, 2G, 1048576)") from None
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return int(value * mult)


# --------------------------------------------------------------------------- destination


@dataclass
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


def load_credentials(config: Path | None = None, env: Mapping[str, str] | None = None) -> Credentials:
    """Credentials and TLS files for DICOMweb: environment first, then the config file."""
    env = os.environ if env is None else env
    creds = Credentials()
    path = Path(config) if config else (Path(env["WSIANON_DELIVERY_CONFIG"]) if env.get("WSIANON_DELIVERY_CONFIG") else None)
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    if path.exists():
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise DeliveryError(path, "delivery config holds credentials and is readable by other users (chmod 600 it)")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DeliveryError(path, f"delivery config is not valid TOML ({type(exc).__name__})") from None
        web = data.get("dicomweb", {})
        if not isinstance(web, dict):
            raise DeliveryError(path, "[dicomweb] must be a table")
        unknown = set(web) - {"username", "password", "token", "ca_bundle", "client_cert", "client_key"}
        if unknown:
            raise DeliveryError(path, f"unknown [dicomweb] key(s): {', '.join(sorted(unknown))}")
        creds.username = web.get("username")
        creds.password = web.get("password")
        creds.token = web.get("token")
        for k in ("ca_bundle", "client_cert", "client_key"):
            if web.get(k):
                setattr(creds, k, Path(web[k]).expanduser())
    elif explicit:
        raise DeliveryError(path, "delivery config not found")
    if env.get("WSIANON_DICOMWEB_USER"):
        creds.username = env["WSIANON_DICOMWEB_USER"]
        creds.password = env.get("WSIANON_DICOMWEB_PASSWORD", "")
    if env.get("WSIANON_DICOMWEB_TOKEN"):
        creds.token = env["WSIANON_DICOMWEB_TOKEN"]
    return creds


@dataclass
class Destination:
    kind: str  # "dicomweb" | "dimse"
    url: str | None = None
    host: str | None = None
    port: int | None = None
    aet: str = "WSIANON"  # our AE title
    aec: str | None = None  # the store's AE title
    credentials: Credentials = field(default_factory=Credentials)
    max_instance_bytes: int | None = None
    connect_timeout: float = 15.0  # reaching the server / association
    timeout: float = 600.0  # waiting for the answer to one request (a large upload takes a while)

    @classmethod
    def dicomweb(cls, url: str, credentials: Credentials | None = None, **kw) -> "Destination":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError(None, f"--dicomweb needs an http:// or https:// URL, got {parts.scheme or 'no scheme'}")
        if parts.username or parts.password:
            raise DeliveryError(
                None,
                "credentials in the --dicomweb URL are refused (they would show in the process list): use WSIANON_DICOMWEB_USER/WSIANON_DICOMWEB_PASSWORD or the delivery config",
            )
        if parts.query:
            raise DeliveryError(None, "the --dicomweb URL must not carry a query string (tokens go in WSIANON_DICOMWEB_TOKEN)")
        return cls("dicomweb", url=url.rstrip("/"), credentials=credentials or Credentials(), **kw)

    @classmethod
    def dimse(cls, hostport: str, aet: str | None, aec: str | None, **kw) -> "Destination":
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DeliveryError(None, f"--dimse needs HOST:PORT, got {hostport!r}")
        for name, title in (("--aet", aet), ("--aec", aec)):
            if not title:
                raise DeliveryError(None, f"--dimse needs {name} (AE title)")
            if len(title) > 16 or not title.isascii() or "\\" in title or not title.strip():
                raise DeliveryError(None, f"{name}: an AE title is 1-16 ASCII characters")
        assert aet is not None, "checked in the loop above"
        return cls("dimse", host=host.strip("[]"), port=int(port), aet=aet, aec=aec, **kw)

    @property
    def key(self) -> str:
        """How the manifest names this destination (no credentials inside)."""
        if self.kind == "dicomweb":
            assert self.url is not None, "a DICOMweb destination has its URL"
            p = urlsplit(self.url)
            return "dicomweb " + urlunsplit((p.scheme, p.netloc, p.path, "", ""))
        return f"dimse {self.aec}@{self.host}:{self.port} as {self.aet}"


# --------------------------------------------------------------------------- manifest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries(
    destination TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    slide TEXT NOT NULL,
    file TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sent', 'failed')),
    response TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt TEXT NOT NULL,
    last_attempt TEXT NOT NULL,
    sent_at TEXT,
    PRIMARY KEY (destination, sop_instance_uid)
)
"""


class DeliveryLog:
    """The ``deliveries`` table of the job manifest (SQLite, WAL, mode 0600)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = open_db(self.path, timeout=60)
            self.db.execute("PRAGMA busy_timeout=60000")
            self.db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise DeliveryError(self.path, f"cannot open the job manifest ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
        for side in ("-wal", "-shm"):
            p = self.path.with_name(self.path.name + side)
            if p.exists():
                os.chmod(p, 0o600)

    def acknowledged(self, dest: str, uid: str, fingerprint: str) -> bool:
        row = self.db.execute("SELECT state, fingerprint FROM deliveries WHERE destination=? AND sop_instance_uid=?", (dest, uid)).fetchone()
        return row is not None and row[0] == "sent" and row[1] == fingerprint

    def record(self, dest: str, inst: "Instance", state: str, response: str) -> None:
        now = _now()
        self.db.execute(
            """INSERT INTO deliveries(destination, sop_instance_uid, slide, file, fingerprint, state, response,
                                      attempts, first_attempt, last_attempt, sent_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
               ON CONFLICT(destination, sop_instance_uid) DO UPDATE SET
                   slide=excluded.slide, file=excluded.file, fingerprint=excluded.fingerprint,
                   state=excluded.state, response=excluded.response, attempts=attempts + 1,
                   last_attempt=excluded.last_attempt,
                   sent_at=COALESCE(excluded.sent_at, CASE WHEN excluded.state='sent' THEN sent_at END)""",
            (dest, inst.uid, inst.slide, inst.rel, inst.fingerprint, state, response[:500], now, now, now if state == "sent" else None),
        )

    def rows(self, dest: str | None = None) -> list[dict]:
        cur = self.db.execute(
            "SELECT * FROM deliveries" + (" WHERE destination=?" if dest else "") + " ORDER BY slide, file",
            (dest,) if dest else (),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------- instances


@dataclass
class Instance:
    slide: str
    path: Path
    rel: str  # relative to OUT
    uid: str
    sop_class: str
    transfer_syntax: str
    size: int
    fingerprint: str
    sha256: str | None = None  # what its verification read (the report entry's files)


def read_instance(path: Path, out: Path, slide: str) -> Instance:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        uid, cls_uid = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
        ts = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one refused instance
        raise WsianonError(path.relative_to(out), f"not a readable DICOM instance ({type(exc).__name__})") from None
    st = path.stat()
    return Instance(slide, path, str(path.relative_to(out)), uid, cls_uid, ts, st.st_size, f"{st.st_size}:{st.st_mtime_ns}")


NOT_LISTED = "the report does not list the files this job verified (an older wsianon wrote it): not sent; run the job again with --overwrite"
UNVERIFIED = "file(s) in the slide's outputs that this job did not verify (added or changed after the run): not sent"


def slide_instances(out: Path, slide: str, outputs: Iterable[str], verified: list[dict] | None) -> tuple[list[Instance], int]:
    """The DICOM files of a slide's outputs that its verification listed (``verified``: the report
    entry's ``files``: path in OUT, size, SHA-256), and how many other files the outputs hold now:
    a file added to (or changed in) the slide's folder after the run was never verified and is
    never sent.  Relative to OUT; nothing outside OUT, no symlinks."""
    if verified is None:
        raise WsianonError(f"{slide}", NOT_LISTED)
    listed = {f.get("file"): f for f in verified if isinstance(f, dict)}
    root = out.resolve()
    files: list[Path] = []
    for rel in outputs:
        p = out / rel
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() or q.is_symlink()))
        elif p.is_file() or p.is_symlink():
            files.append(p)
    for f in files:
        if f.is_symlink() or not f.resolve().is_relative_to(root):
            raise WsianonError(f"{slide}", "an output is a link or lies outside OUT: not sent")
    # a file the verification listed, with its size (its SHA-256 is compared before it is sent)
    mine = [(f, e) for f in files if (e := listed.get(f.relative_to(out).as_posix())) is not None and f.stat().st_size == e.get("size")]
    instances = []
    for f, e in mine:
        if f.suffix.lower() == ".dcm":
            inst = read_instance(f, out, slide)
            inst.sha256 = e.get("sha256")
            instances.append(inst)
    return instances, len(files) - len(mine)


# --------------------------------------------------------------------------- results


@dataclass
class SlideDelivery:
    slide: str
    sent: int = 0
    already: int = 0
    failed: int = 0
    refused: int = 0  # never sent: over the size limit, changed after verification, ...
    requests: int = 0  # STOW-RS requests made
    error: str | None = None  # one line: why this slide is not (completely) delivered

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.refused == 0 and self.error is None

    def line(self) -> str:
        parts = [f"{self.sent} sent" + (f" ({self.requests} STOW-RS request(s))" if self.requests else ""), f"{self.already} already acknowledged"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.refused:
            parts.append(f"{self.refused} refused")
        s = f"{self.slide}: " + ", ".join(parts)
        if self.error:
            s += f" — {self.error}"
        return s


# --------------------------------------------------------------------------- senders


def _stow_status(ds) -> tuple[dict[str, str], dict[str, str]]:
    """STOW-RS response -> ({uid: note} stored, {uid: reason} failed)."""
    ok: dict[str, str] = {}
    bad: dict[str, str] = {}
    for item in getattr(ds, "ReferencedSOPSequence", None) or []:
        uid = str(getattr(item, "ReferencedSOPInstanceUID", ""))
        warn = getattr(item, "WarningReason", None)
        ok[uid] = "stored" + (f" (warning 0x{int(warn):04X})" if warn is not None else "")
    for item in getattr(ds, "FailedSOPSequence", None) or []:
        uid = str(getattr(item, "ReferencedSOPInstanceUID", ""))
        reason = getattr(item, "FailureReason", None)
        bad[uid] = "failure reason " + (f"0x{int(reason):04X}" if reason is not None else "not given")
    return ok, bad


class _MultipartBody:
    """A multipart/related STOW-RS body read from the files on demand.

    It has a length (requests sends it with a Content-Length) and is iterated in 1 MiB pieces
    read from the files in order: the files are streamed, never held in memory whole (a WSI
    volume instance can be gigabytes), and never decoded.  Slicing (``body[a:b]``) reads any
    range."""

    PIECE = 1 << 20

    def __init__(self, files: list[Path], boundary: str):
        self.segments: list[bytes | tuple[Path, int]] = []
        for f in files:
            self.segments.append(f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            self.segments.append((f, f.stat().st_size))
        self.segments.append(f"\r\n--{boundary}--".encode())
        self.size = sum(len(x) if isinstance(x, bytes) else x[1] for x in self.segments)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        for seg in self.segments:
            if isinstance(seg, bytes):
                yield seg
                continue
            path, n = seg
            done = 0
            with open(path, "rb") as fh:
                while done < n:
                    data = fh.read(min(self.PIECE, n - done))
                    if not data:
                        raise OSError(f"{path.name} changed size while being sent")
                    done += len(data)
                    yield data

    def __getitem__(self, sl: slice) -> bytes:
        a, b, _ = sl.indices(self.size)
        out = bytearray()
        pos = 0
        for seg in self.segments:
            n = len(seg) if isinstance(seg, bytes) else seg[1]
            lo, hi = max(a, pos), min(b, pos + n)
            if lo < hi:
                if isinstance(seg, bytes):
                    out += seg[lo - pos : hi - pos]
                else:
                    with open(seg[0], "rb") as fh:
                        fh.seek(lo - pos)
                        data = fh.read(hi - lo)
                    if len(data) != hi - lo:
                        raise OSError(f"{seg[0].name} changed size while being sent")
                    out += data
            pos += n
            if pos >= b:
                break
        return bytes(out)


class _Stow:
    ATTEMPTS = 3  # per request, on a refused connection or HTTP 408/429/503/504

    def __init__(self, dest: Destination):
        import requests
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.web import _Transaction

        c = dest.credentials
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: the archive is addressed directly
        if c.username is not None:
            session.auth = (c.username, c.password or "")
        headers = {"Authorization": f"Bearer {c.token}"} if c.token else None
        if c.ca_bundle:
            session.verify = str(c.ca_bundle)
        if c.client_cert:
            session.cert = (str(c.client_cert), str(c.client_key)) if c.client_key else str(c.client_cert)
        assert dest.url is not None, "a DICOMweb destination has its URL"
        self.client = DICOMwebClient(dest.url, session=session, headers=headers, timeout=(dest.connect_timeout, dest.timeout))
        # dicomweb-client's own retry would re-post an exhausted streamed body: retries are ours
        self.client.set_http_retry_params(retry=False)
        # one body with a Content-Length, streamed by requests, instead of dicomweb-client's
        # chunked transfer encoding: civetweb-based stores (Orthanc) take chunked uploads at a
        # fraction of the speed (measured: 6 vs 46 MB/s for a 432 MB instance)
        self.client.set_chunk_size(1 << 62)
        self.url = self.client._get_studies_url(_Transaction.STORE, None)
        self.requests = requests

    def send(self, batch: list[Instance]) -> dict[str, tuple[str, str]]:
        """POST one STOW-RS request; returns {uid: (state, response)}."""
        for attempt in range(self.ATTEMPTS):
            try:
                return self._send_once(batch)
            except _Retriable as exc:
                if attempt == self.ATTEMPTS - 1:
                    raise Unavailable(exc.reason) from None
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def _send_once(self, batch: list[Instance]) -> dict[str, tuple[str, str]]:
        import uuid

        import pydicom

        boundary = uuid.uuid4().hex
        content_type = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        body = _MultipartBody([i.path for i in batch], boundary)
        r: requests.Response | None
        try:
            # dicomweb-client annotates the body as bytes but only takes its len() and slices, which the streamed body has
            r = self.client._http_post(self.url, body, headers={"Content-Type": content_type, "Accept": "application/dicom+json"})  # type: ignore[arg-type]
            code = r.status_code
        except self.requests.HTTPError as exc:
            r = exc.response
            code = r.status_code if r is not None else 0
            if code in (401, 403):
                raise Unavailable(f"HTTP {code}: not authorised (check WSIANON_DICOMWEB_USER/PASSWORD/TOKEN or the delivery config)") from None
            if code in (408, 429, 503, 504):
                raise _Retriable(f"HTTP {code} from the STOW-RS endpoint") from None
        except self.requests.exceptions.SSLError:
            raise Unavailable("TLS handshake failed (certificate not trusted? see --ca-bundle)") from None
        except (self.requests.ConnectionError, self.requests.Timeout) as exc:
            raise _Retriable(f"cannot reach the DICOMweb server ({type(exc).__name__})") from None
        ds = None
        if r is not None and r.content and "json" in r.headers.get("Content-Type", ""):
            try:
                ds = pydicom.Dataset.from_json(r.json())
            except Exception:  # noqa: BLE001 - an unreadable response acknowledges nothing
                ds = None
        http = f"HTTP {code}"
        if ds is None:
            if code >= 500 or code in (404, 405, 413):
                raise Unavailable(f"{http} from the STOW-RS endpoint" + (" (request too large: see --max-instance-size)" if code == 413 else "")) from None
            return {i.uid: ("failed", f"{http}: no STOW-RS response body") for i in batch}
        ok, bad = _stow_status(ds)
        result = {}
        for i in batch:
            if i.uid in bad:
                result[i.uid] = ("failed", f"{http}: {bad[i.uid]}")
            elif i.uid in ok:
                result[i.uid] = ("sent", f"{http}: {ok[i.uid]}")
            else:
                result[i.uid] = ("failed", f"{http}: instance not acknowledged in the STOW-RS response")
        return result

    def close(self) -> None:
        self.client._session.close()


class _Retriable(Exception):
    """A transient STOW-RS failure, in our own wording."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "transient failure"


class _CStore:
    def __init__(self, dest: Destination):
        self.dest = dest

    def send_all(self, instances: list[Instance]):
        """Yields {uid: (state, response)} per instance, over one association."""
        from pynetdicom import AE, _config

        # stream the data set from the file: no decoding, no re-encoding
        _config.STORE_SEND_CHUNKED_DATASET = True
        ae = AE(ae_title=self.dest.aet)
        ae.acse_timeout = self.dest.connect_timeout * 2
        ae.dimse_timeout = ae.network_timeout = self.dest.timeout
        ae.connection_timeout = self.dest.connect_timeout
        pairs: dict[str, set[str]] = {}
        for i in instances:
            pairs.setdefault(i.sop_class, set()).add(i.transfer_syntax)
        contexts = [(c, ts) for c in sorted(pairs) for ts in sorted(pairs[c])]
        if len(contexts) > 128:
            raise Unavailable("more than 128 SOP class / transfer syntax pairs in one slide")
        for c, ts in contexts:
            # one presentation context per (SOP class, transfer syntax): the SCP
            # accepts or rejects each one, nothing is converted
            ae.add_requested_context(c, [ts])
        assert self.dest.host is not None and self.dest.port is not None and self.dest.aec is not None, "a DIMSE destination has them"
        assoc = ae.associate(self.dest.host, self.dest.port, ae_title=self.dest.aec)
        if not assoc.is_established:
            if assoc.is_rejected:
                raise Unavailable(f"association rejected by {self.dest.aec} (is {self.dest.aet} a known calling AE title there?)")
            raise Unavailable(f"cannot associate with {self.dest.aec} at {self.dest.host}:{self.dest.port} (server down or not a DICOM port)")
        try:
            accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
            for i in instances:
                if (i.sop_class, i.transfer_syntax) not in accepted:
                    yield {i.uid: ("failed", f"the store did not accept transfer syntax {i.transfer_syntax} for this SOP class (not re-encoded)")}
                    continue
                if not assoc.is_established:
                    raise Unavailable("association lost during the transfer")
                try:
                    status = assoc.send_c_store(i.path)
                except (ValueError, AttributeError) as exc:  # pynetdicom refuses the file itself
                    yield {i.uid: ("failed", f"not sent: {type(exc).__name__} preparing the C-STORE")}
                    continue
                except RuntimeError:
                    raise Unavailable("association lost during the transfer") from None
                code = getattr(status, "Status", None)
                if code is None:
                    raise Unavailable("no C-STORE response (association aborted or timed out)")
                if code == 0x0000 or code in (0xB000, 0xB006, 0xB007):
                    yield {i.uid: ("sent", f"C-STORE status 0x{code:04X}")}
                else:
                    yield {i.uid: ("failed", f"C-STORE status 0x{code:04X}")}
        finally:
            if assoc.is_established:
                assoc.release()


# --------------------------------------------------------------------------- delivery


class Deliverer:
    """Sends slides to one destination and records every instance in the manifest."""

    def __init__(self, out: Path, dest: Destination):
        self.out = Path(out)
        self.dest = dest
        self.log = DeliveryLog(manifest_path(self.out))
        self._stow = _Stow(dest) if dest.kind == "dicomweb" else None
        self._down: tuple[float, str] | None = None  # (when, why) the destination was last unreachable

    def close(self) -> None:
        if self._stow is not None:
            self._stow.close()
        self.log.close()

    def __enter__(self) -> "Deliverer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def deliver_slide(self, slide: str, outputs: Iterable[str], files: list[dict] | None, verified_before: float | None = None) -> SlideDelivery:
        """Send a verified slide's instances not yet acknowledged by this destination: only the
        ``files`` its verification listed (see :func:`slide_instances`).
        ``verified_before``: refuse files modified after this time (the report's).
        Never raises for delivery problems: they are in the result (one line)."""
        res = SlideDelivery(slide)
        try:
            return self._deliver_slide(res, outputs, files, verified_before)
        except sqlite3.Error as exc:
            res.failed = max(res.failed, 1)
            res.error = f"job manifest error ({type(exc).__name__}); delivery state not recorded, run push again"
            return res

    def _deliver_slide(self, res: SlideDelivery, outputs: Iterable[str], files: list[dict] | None, verified_before: float | None) -> SlideDelivery:
        slide = res.slide
        key = self.dest.key
        try:
            instances, unverified = slide_instances(self.out, slide, outputs, files)
        except WsianonError as exc:
            res.error = exc.one_line()
            res.refused = 1
            return res
        reasons: list[str] = []
        if not instances:
            res.error = f"{unverified} {UNVERIFIED}" if unverified else "no DICOM instance in its outputs (deliver needs --target dicom)"
            res.refused = max(unverified, 1)
            return res
        todo: list[Instance] = []
        for inst in instances:
            if self.log.acknowledged(key, inst.uid, inst.fingerprint):
                res.already += 1
            elif inst.sha256 is not None and io_digests.sha256_path(inst.path) != inst.sha256:
                # changed since its verification (same size and date included): known after a run,
                # else read once more here (only what is about to be sent)
                unverified += 1
                self.log.record(key, inst, "failed", "refused: not the file that was verified")
            elif verified_before is not None and inst.path.stat().st_mtime > verified_before:
                res.refused += 1
                self.log.record(key, inst, "failed", "refused: file changed after verification")
                reasons.append("a file changed after verification (run wsianon verify / run again)")
            elif self.dest.max_instance_bytes and inst.size > self.dest.max_instance_bytes:
                res.refused += 1
                msg = f"refused: instance is {human_bytes(inst.size)}, above the {human_bytes(self.dest.max_instance_bytes)} limit"
                self.log.record(key, inst, "failed", msg)
                reasons.append(
                    f"instance(s) above the {human_bytes(self.dest.max_instance_bytes)} limit (an instance cannot be split; raise --max-instance-size or the store's limit)"
                )
            else:
                todo.append(inst)
        if unverified:
            res.refused += unverified
            reasons.insert(0, f"{unverified} {UNVERIFIED}")
        recorded: set[str] = set()
        try:
            for uid_state in self._send(todo):
                if self._stow is not None:
                    res.requests += 1
                for inst in todo:
                    if inst.uid in uid_state and inst.uid not in recorded:
                        state, response = uid_state[inst.uid]
                        self.log.record(key, inst, state, response)
                        recorded.add(inst.uid)
                        if state == "sent":
                            res.sent += 1
                        else:
                            res.failed += 1
                            reasons.append(response)
        except Unavailable as exc:
            pending = [i for i in todo if i.uid not in recorded]
            for inst in pending:
                self.log.record(key, inst, "failed", exc.reason)
            res.failed += len(pending)
            res.error = f"{exc.reason}; {len(pending)} instance(s) not delivered, the job stays resumable (wsianon push)"
            return res
        except OSError as exc:  # an output vanished or changed while being read
            pending = [i for i in todo if i.uid not in recorded]
            for inst in pending:
                self.log.record(key, inst, "failed", f"I/O error reading the file ({os_reason(exc)})")
            res.failed += len(pending)
            res.error = f"I/O error reading an output ({os_reason(exc)}); {len(pending)} instance(s) not delivered"
            return res
        if reasons and res.error is None:
            res.error = reasons[0] if len(set(reasons)) == 1 else f"{reasons[0]} (+{len(set(reasons)) - 1} other reason(s))"
        return res

    def _send(self, todo: list[Instance]):
        """Yields {uid: (state, response)} per request, so progress is recorded as it goes."""
        if not todo:
            return
        if self._down is not None and time.monotonic() - self._down[0] < RETRY_AFTER_S:
            # the store was unreachable moments ago: the next slides fail fast with the same reason
            raise Unavailable(self._down[1])
        try:
            yield from self._send_now(todo)
            self._down = None
        except Unavailable as exc:
            self._down = (time.monotonic(), str(exc))
            raise

    def _send_now(self, todo: list[Instance]):
        if self._stow is not None:
            limit = self.dest.max_instance_bytes or DEFAULT_BATCH_BYTES
            batch: list[Instance] = []
            size = 0
            for inst in todo:
                # split into several STOW-RS requests, each at most `limit` bytes of instances
                if batch and size + inst.size > limit:
                    yield self._stow.send(batch)
                    batch, size = [], 0
                batch.append(inst)
                size += inst.size
            if batch:
                yield self._stow.send(batch)
        else:
            for uid_state in _CStore(self.dest).send_all(todo):
                yield uid_state


# --------------------------------------------------------------------------- push an existing OUT


def verified_slides(out: Path) -> tuple[list[dict], float]:
    """The slides OUT's report lists as verified ok, and the report's time."""
    rp = Path(out) / REPORT_NAME
    if not rp.is_file():
        raise DeliveryError(out, f"no {REPORT_NAME}: not a wsianon output folder (or the run did not finish)")
    try:
        data = json.loads(rp.read_text())
        slides = data["slides"]
    except (ValueError, KeyError, TypeError):
        raise DeliveryError(rp, "report is not readable JSON with a slides list") from None
    ok = [s for s in slides if s.get("status") == "ok" and (s.get("verification") or {}).get("ok") is True]
    return ok, rp.stat().st_mtime


def push_out(out: Path, dest: Destination, on_slide: Callable[[SlideDelivery], None] | None = None) -> list[SlideDelivery]:
    """Send every verified-ok slide of an existing OUT; only what was not acknowledged yet."""
    out = Path(out)
    slides, report_time = verified_slides(out)
    results = []
    with Deliverer(out, dest) as d:
        for s in slides:
            r = d.deliver_slide(str(s.get("slide")), s.get("outputs") or [], s.get("files"), verified_before=report_time)
            results.append(r)
            if on_slide:
                on_slide(r)
    return results
