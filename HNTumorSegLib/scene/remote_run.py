"""The Slicer panel's "Run on: this computer / server" choice, without Qt (issue 29).

Why: a clinic workstation without a capable GPU sends Apply and the box refinements to the
segmentation server (``hntumorseg serve``) and gets the same result, progress and cancel.
The choice, the server's URL, the token *file*'s path and an optional CA certificate are the
user's, not the case's: they live in Slicer's application settings (``QSettings``), read and
written here through :class:`SettingsStore` (``value`` / ``setValue``, which ``QSettings`` has
and :class:`DictSettings` imitates for tests). The token itself is never stored anywhere: it is
read from its file (``chmod 600``) when a client is made, so a saved scene or parameter node
cannot leak it.

:func:`use_run_target` points the scene's warm session
(:class:`~HNTumorSegLib.scene.refinement.SceneSession`) at the server (or back at this
computer): its session is closed and its ``client_factory`` replaced, so the next Apply or
refinement runs a :class:`~HNTumorSegLib.server.client.RemoteJob` exactly as it ran a local job.

Example:
    >>> store = DictSettings()
    >>> save_settings(store, RemoteSettings(RunOn.SERVER, "https://gpu-server:8765", "/home/me/.hntumorseg-token"))
    >>> load_settings(store).url
    'https://gpu-server:8765'
    >>> sorted(store.data)
    ['HNTumorSeg/RunOn', 'HNTumorSeg/ServerCACert', 'HNTumorSeg/ServerTokenFile', 'HNTumorSeg/ServerURL']
    >>> load_settings(DictSettings()).run_on.value       # nothing saved yet: this computer
    'local'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..errors import InputError
from ..vocab import RunOn

#: What the panel's "Run on" combo box shows.
RUN_ON_TEXT = {RunOn.LOCAL: "this computer", RunOn.SERVER: "a segmentation server"}
#: The QSettings keys (the token is not among them: only its file's path).
KEYS = {"run_on": "HNTumorSeg/RunOn", "url": "HNTumorSeg/ServerURL", "token_file": "HNTumorSeg/ServerTokenFile",
        "ca_cert": "HNTumorSeg/ServerCACert"}


class SettingsStore(Protocol):
    """What is used of ``QSettings``."""

    def value(self, key: str, default: Any = None) -> Any: ...

    def setValue(self, key: str, value: Any) -> None: ...  # noqa: N802 - Qt's name


class DictSettings:
    """A :class:`SettingsStore` on a dict (tests, scripts)."""

    def __init__(self, data: dict | None = None):
        self.data: dict = dict(data or {})

    def value(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def setValue(self, key: str, value: Any) -> None:  # noqa: N802 - QSettings' name
        self.data[key] = value


@dataclass
class RemoteSettings:
    """Where to run, and the server's address, token file and CA certificate ("" = none)."""

    run_on: RunOn = RunOn.LOCAL
    url: str = ""
    token_file: str = ""
    ca_cert: str = ""

    def __post_init__(self) -> None:
        self.run_on = RunOn.parse(self.run_on or RunOn.LOCAL.value, "run on")
        self.url, self.token_file, self.ca_cert = (str(x or "").strip() for x in (self.url, self.token_file,
                                                                                   self.ca_cert))

    def check(self) -> None:
        """One line when the server is chosen but its URL or token file is missing."""
        if self.run_on is RunOn.SERVER and not self.url:
            raise InputError("'Run on: server' needs the server's address", None,
                             "type it in Server address, e.g. https://gpu-server:8765")
        if self.run_on is RunOn.SERVER and not self.token_file:
            raise InputError("'Run on: server' needs the token file", None,
                             "choose the file holding the server's token (readable by you only)")


def load_settings(store: SettingsStore) -> RemoteSettings:
    """The saved choice (this computer when nothing is saved, or an unknown word was)."""
    raw = {name: str(store.value(key, "") or "") for name, key in KEYS.items()}
    try:
        run_on = RunOn.parse(raw["run_on"] or RunOn.LOCAL.value, "run on")
    except InputError:
        run_on = RunOn.LOCAL
    return RemoteSettings(run_on, raw["url"], raw["token_file"], raw["ca_cert"])


def save_settings(store: SettingsStore, settings: RemoteSettings) -> None:
    """Write the choice; never the token."""
    for name, key in KEYS.items():
        value = getattr(settings, name)
        store.setValue(key, value.value if isinstance(value, RunOn) else value)


def client_factory(settings: RemoteSettings, **client_kwargs: Any) -> Callable[..., Any] | None:
    """A ``client_factory(python=..., device=...)`` for :class:`~HNTumorSegLib.scene.refinement.SceneSession`:
    a :class:`~HNTumorSegLib.server.client.RemoteClient` (the token read from its file now) for the
    server; None (the local warm session) for this computer."""
    settings.check()
    if settings.run_on is RunOn.LOCAL:
        return None
    from ..server.client import RemoteClient, read_token_file

    read_token_file(settings.token_file)   # a missing or shared token file: one line at Apply, not later

    def make(python: str | None = None, device: Any = None) -> Any:
        return RemoteClient.from_token_file(settings.url, settings.token_file, settings.ca_cert or None,
                                            **client_kwargs)

    return make


def use_run_target(scene_session: Any, settings: RemoteSettings, **client_kwargs: Any) -> None:
    """Point the scene's session at ``settings``' target; the current session is closed when it changes."""
    factory = client_factory(settings, **client_kwargs)
    key = (settings.run_on, settings.url, settings.token_file, settings.ca_cert)
    if getattr(scene_session, "_run_target", None) != key:
        scene_session.close_session()
    scene_session.client_factory = factory
    scene_session._run_target = key
    logic = scene_session.logic   # this computer's device probe and CPU-time question mean nothing for a server
    if not hasattr(logic, "_local_check_device"):
        logic._local_check_device = logic.check_device
    logic.check_device = logic._local_check_device if factory is None else False


def health_line(settings: RemoteSettings, timeout_s: float = 5.0) -> str:
    """One line for the panel's status: the server's version, device, models and load, or what is wrong."""
    from ..server.client import RemoteClient, ServerError

    settings.check()
    with RemoteClient.from_token_file(settings.url, settings.token_file, settings.ca_cert or None,
                                      timeout_s=timeout_s) as client:
        try:
            h = client.health()
        except ServerError as exc:
            return exc.message
    jobs = h.get("jobs") or {}
    return (f"{settings.url}: hntumorseg {h.get('version', '?')} on {h.get('device', '?')}, "
            f"{len(h.get('models') or [])} models, {jobs.get('running', 0)} running, {jobs.get('queued', 0)} queued")
