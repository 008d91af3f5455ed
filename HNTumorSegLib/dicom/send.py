"""Send DICOM objects to a DICOM node (PACS, planning system) with C-STORE (pynetdicom).

Only when the user asks (``--send AET@HOST:PORT``). Each file is sent in its own transfer
syntax within one association; we call as ``HNTUMORSEG`` unless told otherwise. Every failure
is one line saying what happened and what to check: the node refused the association (wrong
called AE title, or our AE title not configured there), the connection refused (nothing listens
on that port: said at once, not after ``timeout_s`` - issue 25), an unknown host, no answer
(firewall: ``timeout_s``), or the node answered a C-STORE with a failure status.

Example:
    >>> from pynetdicom import AE, AllStoragePresentationContexts, evt      # a small DICOM node stands in
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> files = write_dicom_series(make_prert_case(seed=3, shape=(4, 16, 16))["T2"], "out", modality="MR")
    >>> node = AE(ae_title="ORTHANC"); node.supported_contexts = AllStoragePresentationContexts
    >>> received = []
    >>> server = node.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
    ...     (evt.EVT_C_STORE, lambda event: received.append(event.request.AffectedSOPInstanceUID) or 0x0000)])
    >>> send_files(files, parse_destination(f"ORTHANC@127.0.0.1:{server.server_address[1]}")), len(received)
    (4, 4)
    >>> server.shutdown()
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputError, SendError  # SendError lives with the other kinds (errors.py)

CALLING_AET = "HNTUMORSEG"
_DEST = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Destination:
    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """``"AET@HOST:PORT"`` -> :class:`Destination`; anything else is an :class:`InputError`."""
    m = _DEST.match(str(text).strip())
    if not m or not 0 < int(m["port"]) < 65536:
        raise InputError(f"--send {text!r} is not AET@HOST:PORT", None,
                         "give the node's AE title, host and port, e.g. PACS@10.0.0.5:104")
    return Destination(m["aet"], m["host"], int(m["port"]))


def check_reachable(destination: Destination, timeout_s: float = 10.0) -> None:
    """One TCP connection to the node before the association, so that a refused connection, an
    unknown host and no answer are told apart (pynetdicom reports all three as "not established").

    Example:
        >>> import socket
        >>> with socket.socket() as s:
        ...     s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]     # a port nothing listens on
        >>> check_reachable(Destination("PACS", "127.0.0.1", port))
        Traceback (most recent call last):
        ...
        HNTumorSegLib.errors.SendError: PACS@127.0.0.1:...: the connection was refused ...
    """
    import socket

    fix = "check the host and port, and that the DICOM node is running"
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout_s):
            pass
    except ConnectionRefusedError:
        raise SendError(f"{destination}: the connection was refused (nothing listens on port {destination.port} "
                        f"of {destination.host})", None, fix) from None
    except socket.gaierror:
        raise SendError(f"{destination}: unknown host {destination.host}", None, "check the host name") from None
    except (socket.timeout, TimeoutError):
        raise SendError(f"{destination} did not answer within {timeout_s:g} s", None,
                        fix + " and reachable (firewall)") from None
    except OSError as exc:
        raise SendError(f"{destination} cannot be reached ({exc.strerror or exc})", None, fix) from None


def send_files(files: Iterable[str | os.PathLike], destination: Destination, calling_aet: str = CALLING_AET,
               timeout_s: float = 10.0) -> int:
    """C-STORE every file to ``destination`` in one association; returns how many were stored."""
    import pydicom
    from pynetdicom import AE

    datasets = [(Path(f), pydicom.dcmread(str(f))) for f in files]
    check_reachable(destination, timeout_s)
    ae = AE(ae_title=calling_aet)
    ae.connection_timeout = timeout_s
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    for _, ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.aet)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise SendError(f"{destination} refused the association (called AE title {destination.aet}, "
                            f"calling {calling_aet})", None,
                            "check the node's AE title and that it accepts our AE title")
        raise SendError(f"{destination} did not answer within {timeout_s:g} s (no association)", None,
                        "check the host, port and that the DICOM node is running and reachable")
    stored = 0
    try:
        for path, ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                what = "no answer" if code == -1 else f"status 0x{code:04X}"
                raise SendError(f"{destination} did not store the object ({what})", path,
                                "check the node's log; it may refuse this kind of object")
            stored += 1
    finally:
        assoc.release()
    return stored
