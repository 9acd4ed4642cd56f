"""The one exception hierarchy of coursehub: every message says what to do next."""


class CoursehubError(Exception):
    """Base class of every error coursehub raises on purpose."""


class ConfigError(CoursehubError):
    """coursehub.yaml (or a command-line value) is invalid."""


class AccountError(CoursehubError):
    """A workshop account operation cannot be done."""


class SandboxError(CoursehubError):
    """The sandbox (Unix account, bubblewrap, cgroup) cannot be set up."""


class EnvironmentBuildError(CoursehubError):
    """A course environment could not be built."""


class HubNotRunning(CoursehubError):
    """The command needs a running hub and none answers."""


class BackupError(CoursehubError):
    """A backup cannot be written or restored."""


class LinkError(CoursehubError):
    """A launch link is malformed; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BinderSpecError(CoursehubError):
    """A Binder request is malformed; the message says what to fix."""


class LaunchRefused(CoursehubError):
    """This launch cannot go ahead; the message tells the reader why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PhaseError(CoursehubError):
    """A load-test phase failed in a way the flow understood; `kind` is how it is grouped."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class GradesError(CoursehubError):
    """Scores cannot be read or posted; the message says what to fix."""


class PlatformError(GradesError):
    """The LMS platform refused or did not answer; `attempts` were made."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class ReloadAsked(CoursehubError):
    """Raised by `coursehub up`'s reload-signal handler to end its blocking wait for the hub."""
