"""A loopback stand-in for SkyServer + the SDSS Science Archive Server (tests and agent evals).

Why a server and not mocks: the code under test is the *real* astroquery client; only the far
end is replaced. It answers

* SkyServer's SQL search endpoint as astroquery calls it
  (``GET /dr{N}/en/tools/search/x_results.aspx?cmd=<sql>&format=csv&searchtool=SQL``) with the
  CSV SkyServer returns: a ``#Table1`` line, a header line, unquoted rows. The SQL runs on an
  in-memory sqlite copy of the catalog (tables SpecObj/SpecObjAll, PhotoObj/PhotoObjAll);
  T-SQL ``SELECT TOP n`` becomes ``LIMIT n``. SQL errors come back as an HTML page with
  status 200, as SkyServer does.
* SAS spectrum paths in the real layout: legacy SDSS reductions (run2d 26/103/104) under
  ``/dr{N}/sdss/spectro/redux/{run2d}/spectra/{plate}/spec-....fits``, BOSS/eBOSS (v5_*) under
  ``/dr{N}/eboss/spectro/redux/{run2d}/spectra/full/{plate}/...`` (so astroquery's first URL
  404s for them and the client's eBOSS fallback is exercised).

Spectrum files are written in SDSS's spec format by the project's one writer
(speclm.tools.spectrum.write_sdss_spec_fits), synthesized from Gaussian lines at the object's
redshift. Faults can be injected per path: HTTP 500 or a stall past the client's timeout
for the first k requests, a truncated body, or a per-request delay (to kill a fetch midway).
"""
from __future__ import annotations

import csv
import io
import re
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from speclm.tools.spectrum import write_sdss_spec_fits

# rest-frame vacuum wavelengths (Angstrom), amplitude relative to continuum (negative = absorption)


@dataclass
class SimObject:
    """One catalog row of the fake SkyServer (SpecObj joined with PhotoObj)."""

    plate: int
    mjd: int
    fiberid: int
    z: float
    ra: float
    dec: float
    run2d: str = "26"
    obj_class: str = "GALAXY"
    subclass: str = "STARFORMING"
    zwarning: int = 0
    phototype: int = 3
    dered_i: float = 17.0
    z_err: float = 1e-5
    defect: str = ""  # "zero_ivar": a well-formed file that read_spectrum must reject

    @property
    def specobjid(self) -> int:
        """SDSS bit layout (plate<<50 | fiber<<38 | (mjd-50000)<<24 | run2d<<10), as in DR8+."""
        run = int(self.run2d) if self.run2d.isdigit() else 0
        return (self.plate << 50) | (self.fiberid << 38) | ((self.mjd - 50000) << 24) | (run << 10)

    @property
    def objid(self) -> int:
        return 1237650000000000000 + self.plate * 1000 + self.fiberid

    @property
    def name(self) -> str:
        return f"{self.plate:04d}-{self.mjd:05d}-{self.fiberid:04d}"


def make_objects(n: int, seed: int = 0, z_max: float = 0.5, n_decoys: int = 0) -> list[SimObject]:
    """n galaxies passing the paper's cuts with z uniform in (0.01, z_max), plus decoys failing
    one cut each (star, zWarning, faint, z too high) that a correct query must not return."""
    rng = np.random.default_rng(seed)
    objs = []
    for i in range(n):
        boss = i % 3 == 2  # a third are BOSS-like (eBOSS layout on the SAS)
        objs.append(SimObject(
            plate=(3600 + i // 40) if boss else (266 + i // 40), mjd=55200 if boss else 51630,
            fiberid=1 + i % 40, z=float(rng.uniform(0.01, z_max)),
            ra=float(rng.uniform(150, 210)), dec=float(rng.uniform(-5, 5)),
            run2d="v5_13_0" if boss else "26", dered_i=float(rng.uniform(14, 17.9))))
    bad = [dict(obj_class="STAR", phototype=6), dict(zwarning=4), dict(dered_i=18.5),
           dict(z=0.7)]
    for j in range(n_decoys):
        kw = dict(plate=7000 + j // 40, mjd=57000, fiberid=1 + j % 40, z=0.2,
                  ra=float(rng.uniform(150, 210)), dec=float(rng.uniform(-5, 5)))
        kw.update(bad[j % len(bad)])
        objs.append(SimObject(**kw))
    return objs


def spec_fits_bytes(obj: SimObject, seed: int = 0) -> bytes:
    """A spec-PPPP-MMMMM-FFFF.fits in SDSS's layout with Gaussian lines at obj.z."""
    from speclm.tools.synthetic import GALAXY_LINES, synthetic_spectrum

    # the one synthetic builder: the demo's galaxy (+ [O III] 4960) at obj.z on SDSS's grid
    s = synthetic_spectrum(obj.z, lines={**GALAXY_LINES, "OIII4960": 3.0}, seed=seed + obj.fiberid + 1000 * obj.plate)
    loglam, wave, flux, ivar = np.log10(s.wavelength), s.wavelength, s.flux, s.ivar.copy()
    and_mask = np.zeros(wave.size, np.int32)
    and_mask[:5] = 1 << 23  # BRIGHTSKY-like flag on a few edge pixels
    ivar[:5] = 0.0
    if obj.defect == "zero_ivar":
        ivar[:] = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sdss_spec_fits(
            Path(tmp) / f"spec-{obj.name}.fits", loglam, flux, ivar, obj.z, plate=obj.plate,
            mjd=obj.mjd, fiberid=obj.fiberid, specobjid=obj.specobjid, cls=obj.obj_class,
            and_mask=and_mask, z_err=obj.z_err, ra=obj.ra, dec=obj.dec, subclass=obj.subclass,
            zwarning=obj.zwarning)
        return path.read_bytes()


@dataclass
class Fault:
    """Misbehaviour for the first ``times`` requests of one path."""

    kind: str  # "500" | "404" | "timeout" | "truncate" | "html200"
    times: int = 1


_SPEC_RE = re.compile(r"^/dr(?P<dr>\d+)/(?P<survey>sdss|eboss)/spectro/redux/(?P<run2d>[^/]+)/"
                      r"spectra(?P<full>/full|/lite)?/(?P<plate>\d{4,5})/"
                      r"spec-(?P<p2>\d{4,5})-(?P<mjd>\d{5})-(?P<fiber>\d{4})\.fits$")
_SQL_RE = re.compile(r"^/dr(?P<dr>\d+)/en/tools/search/x_results\.aspx$", re.I)


@dataclass
class SkyServerSim:
    """The fake SDSS. Use as a context manager; urls in .skyserver_url / .sas_url."""

    objects: list[SimObject]
    data_release: int = 16
    stall_s: float = 2.0  # how long a "timeout" fault stalls (set > client timeout)
    spec_delay_s: float = 0.0  # per spectrum request, to make a fetch slow enough to kill
    faults: dict[str, Fault] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    sql_log: list[str] = field(default_factory=list)
    sql_params: list[dict] = field(default_factory=list)  # query-string keys astroquery sent

    def __post_init__(self):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.executescript(
            "CREATE TABLE SpecObjAll (specObjID INTEGER, bestObjID INTEGER, plate INTEGER,"
            " mjd INTEGER, fiberID INTEGER, run2d TEXT, ra REAL, dec REAL, z REAL, zErr REAL,"
            " zWarning INTEGER, class TEXT, subClass TEXT);"
            "CREATE TABLE PhotoObjAll (objID INTEGER, type INTEGER, ra REAL, dec REAL,"
            " dered_u REAL, dered_g REAL, dered_r REAL, dered_i REAL, dered_z REAL);"
            "CREATE VIEW SpecObj AS SELECT * FROM SpecObjAll;"
            "CREATE VIEW PhotoObj AS SELECT * FROM PhotoObjAll;")
        for o in self.objects:
            self._db.execute("INSERT INTO SpecObjAll VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                             (o.specobjid, o.objid, o.plate, o.mjd, o.fiberid, o.run2d, o.ra,
                              o.dec, o.z, o.z_err, o.zwarning, o.obj_class, o.subclass))
            self._db.execute("INSERT INTO PhotoObjAll VALUES (?,?,?,?,?,?,?,?,?)",
                             (o.objid, o.phototype, o.ra, o.dec, o.dered_i + 2.0,
                              o.dered_i + 1.0, o.dered_i + 0.4, o.dered_i, o.dered_i - 0.3))
        self._by_name = {o.name: o for o in self.objects}
        self._fits_cache: dict[str, bytes] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle
    def __enter__(self) -> "SkyServerSim":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                sim._handle(self)

            def log_message(self, *args):  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def skyserver_url(self) -> str:
        return self.base

    @property
    def sas_url(self) -> str:
        return self.base + "/sas"

    def env(self) -> dict[str, str]:
        return {"SPECLM_SKYSERVER_URL": self.skyserver_url, "SPECLM_SAS_URL": self.sas_url}

    def fits_for(self, obj: SimObject) -> bytes:
        with self._lock:
            if obj.name not in self._fits_cache:
                self._fits_cache[obj.name] = spec_fits_bytes(obj)
            return self._fits_cache[obj.name]

    def spec_path(self, obj: SimObject) -> str:
        """The path this server serves obj's spectrum at (real SAS layout)."""
        legacy = obj.run2d in ("26", "103", "104")
        survey, full = ("sdss", "") if legacy else ("eboss", "/full")
        return (f"/sas/dr{self.data_release}/{survey}/spectro/redux/{obj.run2d}/spectra{full}/"
                f"{obj.plate:04d}/spec-{obj.name}.fits")

    # -- request handling
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(req.path)
        path = url.path
        with self._lock:
            self.hits[path] += 1
            fault = self.faults.get(path)
            active = fault is not None and fault.times > 0
            if active:
                fault.times -= 1
        try:
            if active and fault.kind == "500":
                return self._send(req, 500, b"<html><body>Internal Server Error</body></html>",
                                  "text/html")
            if active and fault.kind == "404":
                return self._send(req, 404, b"<html>404 Not Found</html>", "text/html")
            if active and fault.kind == "timeout":
                time.sleep(self.stall_s)
                return self._send(req, 503, b"late", "text/plain")
            if _SQL_RE.match(path):
                return self._sql(req, urllib.parse.parse_qs(url.query), int(
                    _SQL_RE.match(path)["dr"]))
            if path.startswith("/sas/"):
                return self._spectrum(req, path[len("/sas"):], fault if active else None)
            self._send(req, 404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout fault): nothing to answer

    def _send(self, req, status: int, body: bytes, ctype: str, length: int | None = None):
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body) if length is None else length))
        req.end_headers()
        req.wfile.write(body)

    def _sql(self, req, qs: dict, dr: int) -> None:
        sql = qs.get("cmd", [""])[0].strip()
        if qs.get("format", [""])[0].lower() != "csv" or dr != self.data_release:
            return self._send(req, 404, b"unsupported", "text/plain")
        self.sql_log.append(sql)
        self.sql_params.append({k: v[0] for k, v in qs.items() if k != "cmd"})
        m = re.match(r"(?is)^\s*select\s+top\s+(\d+)\s+(.*)$", sql)
        if m:
            sql = f"SELECT {m[2]} LIMIT {int(m[1])}"
        try:
            with self._lock:
                cur = self._db.execute(sql)
                names = [d[0] for d in cur.description]
                rows = cur.fetchall()
        except sqlite3.Error as exc:
            page = (f"<html><head><title>SQL Search</title></head><body><h3>SQL returned the "
                    f"following error:</h3><i>{exc}</i></body></html>")
            return self._send(req, 200, page.encode(), "text/html")
        out = io.StringIO()
        out.write("#Table1\n")
        w = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(names)
        w.writerows(rows)
        self._send(req, 200, out.getvalue().encode(), "text/plain")

    def _spectrum(self, req, path: str, fault: Fault | None) -> None:
        m = _SPEC_RE.match(path)
        obj = self._by_name.get(f"{int(m['plate']):04d}-{m['mjd']}-{m['fiber']}") if m else None
        if obj is None or "/sas" + path != self.spec_path(obj):
            return self._send(req, 404, b"<html>404 Not Found</html>", "text/html")
        if self.spec_delay_s:
            time.sleep(self.spec_delay_s)
        body = self.fits_for(obj)
        if fault is not None and fault.kind == "truncate":
            return self._send(req, 200, body[: len(body) // 3], "application/fits")
        if fault is not None and fault.kind == "html200":
            return self._send(req, 200, b"<html>maintenance</html>", "text/html")
        self._send(req, 200, body, "application/fits")
