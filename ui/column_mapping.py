"""The column-mapping step for an uploaded ratings file: which column is the user, the item,
the rating and (optionally) the timestamp.

Each upload gets its own selectboxes, keyed by the upload's content hash, so a new file
starts from what was sniffed in it instead of the last file's choices. No drawing here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from mfcore.data.custom import ROLES, RatingsPreview
from ui.data_sources import seed_widget

NONE = "(none)"  # the selectbox choice for "no column has this role"
REQUIRED = ("user", "item", "rating")


def upload_key(staged: Path) -> str:
    """The key of an upload's widgets: its content hash (the staged file's folder name)."""
    return staged.parent.name


def widget_key(role: str, key: str) -> str:
    """The selectbox key of ``role`` for the upload ``key``."""
    return f"data_map_{role}_{key}"


def load_button_key(key: str) -> str:
    """The key of the "Load with this mapping" button for the upload ``key``."""
    return f"data_map_load_{key}"


def options(preview: RatingsPreview) -> list[str]:
    """The selectbox options: no column, then the file's columns."""
    return [NONE, *preview.columns]


def label(role: str) -> str:
    """E.g. 'User column', 'Timestamp column (optional)'."""
    return f"{role.capitalize()} column" + ("" if role in REQUIRED else " (optional)")


def seed_widgets(preview: RatingsPreview, key: str) -> None:
    """Start each role's selectbox at the column sniffed for it (once per upload)."""
    for role in ROLES:
        seed_widget(widget_key(role, key), preview.mapping.get(role) or NONE)


def mapping_of(choices: Mapping[str, str]) -> dict[str, str | None]:
    """Role -> column from the selectboxes' choices (None where :data:`NONE` is chosen)."""
    return {role: None if choices[role] == NONE else choices[role] for role in ROLES}


def missing_message(mapping: Mapping[str, str | None]) -> str | None:
    """What to choose before loading ('Choose the user and item columns to go on.'), or None."""
    missing = [r for r in REQUIRED if not mapping.get(r)]
    if not missing:
        return None
    names = " and ".join(missing) if len(missing) < 3 else "user, item and rating"
    return f"Choose the {names} column{'s' if len(missing) > 1 else ''} to go on."


def detected_caption(preview: RatingsPreview) -> str:
    """What was sniffed: separator, header row, encoding."""
    sep = "tab" if preview.separator == "\t" else repr(preview.separator)
    header = "a header row" if preview.has_header else "no header row"
    return f"Detected: separator {sep}, {header}, encoding {preview.encoding}. First rows:"
