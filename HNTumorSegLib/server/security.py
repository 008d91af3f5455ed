"""The segmentation server's start-up rules and bearer tokens (issue 29, docs/server-api.md).

Why a module of its own: these are the rules that decide whether a server may start at all and
who may see a job; kept small and free of the web stack so they are read and tested alone.

* a server starts only with a token file, unless it is bound to 127.0.0.1 and the operator
  said ``--insecure-localhost`` (then every request is accepted, as on the workstation itself);
* the token file must not be readable by the group or the world (like ``ssh`` keys);
  it holds one token per line (blank lines and ``#`` comments ignored), at least 16 characters,
  so that several users (or clinics) can share one server without seeing each other's jobs;
* a request's ``Authorization: Bearer <token>`` is compared with every token in constant time
  (:func:`hmac.compare_digest`); the *owner* of a job is a hash of its token, never the token.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "tokens")
    >>> with open(path, "w") as f:
    ...     _ = f.write("# clinic A\\n0123456789abcdef0123\\n")
    >>> os.chmod(path, 0o600)
    >>> tokens = Tokens.from_file(path)
    >>> tokens.owner("Bearer 0123456789abcdef0123") == tokens.owner("Bearer 0123456789abcdef0123")
    True
    >>> tokens.owner("Bearer wrong") is None, tokens.owner(None) is None
    (True, True)
    >>> check_start("0.0.0.0", None, insecure_localhost=True)
    Traceback (most recent call last):
    ...
    HNTumorSegLib.errors.InputError: --insecure-localhost serves only on 127.0.0.1, not on '0.0.0.0' - give --token-file FILE (one token per line, mode 0600)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

#: The host ``--insecure-localhost`` allows (nothing else on the network can reach it).
LOCALHOST = "127.0.0.1"
#: Shortest token accepted: a guessable token is no token.
MIN_TOKEN_CHARS = 16
#: Owner of every job on a server started with ``--insecure-localhost`` (no tokens).
LOCAL_OWNER = "local"


@dataclass(frozen=True)
class Tokens:
    """The tokens a server accepts; ``None`` tokens = ``--insecure-localhost`` (everyone is the local owner)."""

    tokens: tuple[bytes, ...] | None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokens":
        """Read a token file: refused (InputError naming it) when missing, group/world readable, or
        holding no token of at least :data:`MIN_TOKEN_CHARS` characters."""
        p = Path(path)
        fix_mode = f"run: chmod 600 {p}"
        try:
            st = p.stat()
        except OSError as exc:
            raise InputError(f"cannot read the token file ({exc.strerror})", p,
                             "give --token-file FILE holding one token per line") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError("the token file is not a regular file", p, "give --token-file FILE")
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(f"the token file is readable by others (mode {stat.S_IMODE(st.st_mode):o})", p, fix_mode)
        text = p.read_text(encoding="utf-8", errors="strict")
        found = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        short = [t for t in found if len(t) < MIN_TOKEN_CHARS or any(c.isspace() for c in t)]
        if not found or short:
            raise InputError(f"the token file holds {'no token' if not found else 'a token shorter than '}"
                             f"{'' if not found else str(MIN_TOKEN_CHARS) + ' characters or with spaces'}", p,
                             "write one token per line, e.g. the output of: python -c "
                             "\"import secrets; print(secrets.token_urlsafe(32))\"")
        return cls(tuple(t.encode("utf-8") for t in found))

    @classmethod
    def insecure(cls) -> "Tokens":
        return cls(None)

    def owner(self, authorization: str | None) -> str | None:
        """The owner id of an ``Authorization`` header value; None when it is missing or wrong.

        Every token is compared (no early exit), each in constant time."""
        if self.tokens is None:
            return LOCAL_OWNER
        if not authorization:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        given_b = given.strip().encode("utf-8", errors="replace")
        match = None
        for token in self.tokens:
            if hmac.compare_digest(given_b, token):
                match = token
        return None if match is None else hashlib.sha256(b"hntumorseg-owner:" + match).hexdigest()[:32]


def check_start(host: str, token_file: str | os.PathLike | None, insecure_localhost: bool = False) -> Tokens:
    """The tokens a server on ``host`` uses, or an InputError (one line) when it must not start."""
    if token_file:
        return Tokens.from_file(token_file)
    if not insecure_localhost:
        raise InputError("no --token-file given; a server without a token serves anyone who reaches it", None,
                         "give --token-file FILE (one token per line, mode 0600), or for a test on this "
                         f"computer only: --host {LOCALHOST} --insecure-localhost")
    if host != LOCALHOST:
        raise InputError(f"--insecure-localhost serves only on {LOCALHOST}, not on {host!r}", None,
                         "give --token-file FILE (one token per line, mode 0600)")
    return Tokens.insecure()
