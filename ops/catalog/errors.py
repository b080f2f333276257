"""The one exception type for bad catalog or group_data input."""

from __future__ import annotations


class ConfigError(Exception):
    """Every problem found in the configuration, each naming its file and key path.

    Raised once, after all files were checked, so a user fixes everything in one go.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} configuration errors:\n{lines}"
        super().__init__(message)


class Problems:
    """Collects `file: key.path: message` lines; `raise_if_any` raises one ConfigError."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, file: str, path: str, message: str) -> None:
        self.lines.append(f"{file}: {path}: {message}" if path else f"{file}: {message}")

    def extend(self, file: str, errors: list[tuple[str, str]]) -> None:
        for path, message in errors:
            self.add(file, path, message)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError(self.lines)
