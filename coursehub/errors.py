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
