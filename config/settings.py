"""Baton's one typed Settings object, built from an explicit environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.projects import check_cap

ENV_PREFIX = "BATON_"
MIN_DASHBOARD_TOKEN_CHARS = 16
DEFAULT_STATE_DIR = Path(".baton")
PLACEHOLDERS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "token", "password", "xxx", "todo", "placeholder"}
)
ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class SettingsError(ValueError):
    """The configuration cannot start Baton; the message names variables, never their values."""


def async_database_url(url: str) -> str:
    """Map a plain `sqlite:///…` or `postgresql://…` URL onto the async driver Baton uses."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ASYNC_DRIVERS:
        known = ", ".join(sorted({"sqlite", "postgresql"}))
        raise SettingsError(f"BATON_DATABASE_URL must start with one of {known}:// (got scheme {scheme!r})")
    return f"{ASYNC_DRIVERS[scheme.lower()]}://{rest}"


def is_placeholder(value: SecretStr | None) -> bool:
    if value is None:
        return True
    text = value.get_secret_value().strip()
    return text.lower() in PLACEHOLDERS or (text.startswith("<") and text.endswith(">"))


class Settings(BaseSettings):
    """Everything Baton reads from the environment (prefix `BATON_`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    state_dir: Path = DEFAULT_STATE_DIR
    database_url: str = ""
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 5 * 1024 * 1024
    body_timeout_s: float = 10.0
    sandbox: bool | None = None
    log_level: str = "INFO"
    sweep_interval_s: int = 15
    sweep_grace_s: float = 5.0
    run_lease_s: float = 60.0  # a running run whose worker stopped beating this long is taken over
    max_run_attempts: int = 12  # times a run is picked up (deferrals, crashes) before it is failed
    job_timeout_s: int = 3600
    shutdown_wait_s: int = 30

    gitlab_url: str | None = None
    gitlab_token: SecretStr | None = None
    gitlab_webhook_secret: SecretStr | None = None
    gitlab_signing_token: SecretStr | None = None
    gitlab_bot_username: str | None = None
    gitlab_bot_user_id: int | None = None

    jira_url: str | None = None
    jira_user: str | None = None
    jira_token: SecretStr | None = None
    jira_webhook_secret: SecretStr | None = None
    jira_bot_account_id: str | None = None
    jira_bot_name: str | None = None

    trigger_label: str = "ai-implement"
    design_label: str = "ai-design"  # a ticket labelled so gets an ADR drafted (orchestrators/design.py)
    ci_fix_attempts: int = 3  # CI analyses a merge request gets from failed pipelines before Baton stops
    ci_fix_budget_usd: float = 5.0  # USD spent on a merge request past which those analyses stop
    projects_file: Path | None = None  # default: config/projects.yaml (the sandbox: the packaged example)
    skills_file: Path | None = None  # default: the packaged config/skills.yaml
    public_url: str | None = None  # where GitLab/Jira reach Baton, for `baton hooks install`

    anthropic_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    agent_model: str | None = None
    agent_timeout_s: float = 900.0
    sandbox_port: int = 8081  # the sandbox's GitLab; Jira and the scripted model take the next two ports
    sandbox_scenario: Path | None = None
    git_author_name: str = "Baton"
    git_author_email: str = "baton@localhost"
    workspace_pool: int = 2  # warm worktrees a worker keeps per repository (bot/git/pool.py); 0: none
    # Containment of what the agent and the repository's commands run (see bot/containment).
    allow_uncontained: bool = False  # development only: run agent work without the OS sandbox
    containment_uid: int = 65534  # the unprivileged uid/gid a root worker drops to inside the sandbox
    containment_gid: int = 65534
    containment_paths: str = ""  # extra read-only host paths for the sandbox, separated by ':'
    containment_bwrap: str = "bwrap"  # the bubblewrap program (a name looked up in PATH, or a path)
    # The read-only web dashboard (shell/dashboard): off unless "token"; unset, `baton up` in sandbox
    # mode turns it on with a generated token.
    dashboard: Literal["off", "token"] | None = None
    dashboard_token: SecretStr | None = None
    # The knowledge store (bot/knowledge): the wiki's git repository, its remote, and the derived index.
    wiki_dir: Path | None = None  # default: <state_dir>/wiki
    wiki_remote: str | None = None  # a git URL the wiki fetches and pushes (token: BATON_GITLAB_TOKEN)
    knowledge_index: Path | None = None  # default: <state_dir>/knowledge.db
    # Cost caps in USD for every project whose entry in the project map sets none (orchestrators/budget.py):
    # all runs on one ticket or merge request, and a team's runs in a calendar month (UTC). Unset: no cap.
    budget_ticket_usd: float | None = None
    budget_month_usd: float | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment is passed in explicitly (see `load_settings`), never read behind our back.
        return (init_settings,)

    @field_validator("port")
    @classmethod
    def _port_in_range(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be between 0 and 65535")
        return value

    @field_validator("max_body_bytes")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("budget_ticket_usd", "budget_month_usd")
    @classmethod
    def _cap(cls, value: float | None) -> float | None:
        return check_cap(value)

    @field_validator("workspace_pool")
    @classmethod
    def _pool_size(cls, value: int) -> int:
        if not 0 <= value <= 64:
            raise ValueError("must be between 0 and 64")
        return value

    @property
    def sandbox_mode(self) -> bool:
        """No GitLab and no Jira configured (or BATON_SANDBOX=1): the local simulators stand in."""
        if self.sandbox is not None:
            return self.sandbox
        return not self.gitlab_url and not self.jira_url

    @property
    def async_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.state_dir / 'baton.db'}"
        return async_database_url(url)

    @property
    def projects_path(self) -> Path:
        """The project mapping in force: BATON_PROJECTS_FILE, config/projects.yaml, or the sandbox example."""
        if self.projects_file is not None:
            return self.projects_file
        local = Path("config/projects.yaml")
        if local.exists() or not self.sandbox_mode:
            return local
        return Path(__file__).with_name("projects.example.yaml")

    @property
    def wiki_path(self) -> Path:
        return self.wiki_dir if self.wiki_dir is not None else Path(self.state_dir) / "wiki"

    @property
    def knowledge_index_path(self) -> Path:
        default = Path(self.state_dir) / "knowledge.db"
        return self.knowledge_index if self.knowledge_index is not None else default

    @property
    def webhook_base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def secrets(self) -> list[str]:
        """Every configured secret token or key (`bot.redact.settings_secrets` adds every other SecretStr
        and the passwords inside URL settings)."""
        values = [self.gitlab_token, self.gitlab_webhook_secret, self.gitlab_signing_token]
        values += [self.jira_token, self.jira_webhook_secret, self.anthropic_api_key]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def _required(settings: Settings) -> list[tuple[str, SecretStr | None]]:
    needed: list[tuple[str, SecretStr | None]] = []
    if settings.gitlab_url:
        needed += [
            ("GITLAB_TOKEN", settings.gitlab_token),
            ("GITLAB_WEBHOOK_SECRET", settings.gitlab_webhook_secret),
        ]
    if settings.jira_url:
        needed += [("JIRA_TOKEN", settings.jira_token), ("JIRA_WEBHOOK_SECRET", settings.jira_webhook_secret)]
    return needed


def check_dashboard(settings: Settings) -> None:
    """With the dashboard on, its token must be set, not a placeholder and not short (sandbox too)."""
    token = settings.dashboard_token
    if settings.dashboard == "token" and (
        is_placeholder(token) or token is None or len(token.get_secret_value()) < MIN_DASHBOARD_TOKEN_CHARS
    ):
        raise SettingsError(
            f"BATON_DASHBOARD=token needs BATON_DASHBOARD_TOKEN: at least {MIN_DASHBOARD_TOKEN_CHARS} "
            "characters, not a placeholder"
        )


def check_secrets(settings: Settings) -> None:
    """Refuse to start with a missing or placeholder secret, outside the sandbox."""
    check_dashboard(settings)
    if settings.sandbox_mode:
        return
    bad = [ENV_PREFIX + name for name, value in _required(settings) if is_placeholder(value)]
    if bad:
        raise SettingsError(f"missing or placeholder secret: set {', '.join(bad)}")


def load_settings(environ: Mapping[str, str], *, check: bool = True, **overrides: Any) -> Settings:
    """Build Settings from an environment mapping (only `BATON_*` keys are read)."""
    values: dict[str, Any] = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in Settings.model_fields
    }
    values.update(overrides)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
    async_database_url(settings.database_url or "sqlite://")
    if check:
        check_secrets(settings)
    return settings
