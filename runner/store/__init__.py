"""The output store: where paid results land, whole and accounted for.

    layout.py      paths inside OUT (names follow runner.naming; UsageError for anything unsafe)
    atomic.py      atomic, durable writes; OSError -> StoreError with the fix
    media.py       checks of downloaded bytes: format, pixel size, bomb guard, completeness
    sidecar.py     the versioned sidecar model, built from an allow-list; write/read
    ledger.py      OUT/.runner/ledger.sqlite: one row per job and its state (the facade of
                   ledger_rows, ledger_file, ledger_core, ledger_writes, ledger_reads)
    migrations.py  the ledger's schema as ordered, named steps
    lock.py        one runner per folder
    save.py        the checked, atomic write of one downloaded image
    verify.py      `runner verify OUT`
    status.py      `runner status OUT`

The write path for one finished job (see docs/store.md): `save_image` each
image (checked, then written atomically), `write_sidecar` beside each one,
then `Ledger.completed` with the files.
"""

from runner.naming import DEFAULT_PATTERN, check_name, check_pattern, fold_name, slug
from runner.store.atomic import (
    ensure_dir,
    is_temp_name,
    remove_temp_files,
    store_error,
    temp_files,
    write_atomic,
)
from runner.store.layout import (
    EXTENSIONS,
    contained,
    image_path,
    input_image_path,
    relative_name,
    sidecar_path,
)
from runner.store.ledger import (
    IN_FLIGHT,
    STATES,
    JobRow,
    Ledger,
    LedgerMeta,
    State,
    StateTotals,
    ledger_path,
)
from runner.store.media import ImageInfo, check_image, inspect_image
from runner.store.save import SavedFile, expected_pixels, save_image
from runner.store.sidecar import (
    Sidecar,
    build_sidecar,
    read_sidecar,
    sidecar_schema_json,
    utc_stamp,
    write_sidecar,
)
from runner.store.status import (
    RETENTION_S,
    FolderStatus,
    billed_failures_text,
    folder_status,
    render_status,
    with_billed,
)
from runner.store.verify import (
    VerifyReport,
    check_pair,
    finished_files,
    recorded_files,
    render_verify,
    verify,
)

__all__ = [
    "DEFAULT_PATTERN",
    "EXTENSIONS",
    "IN_FLIGHT",
    "RETENTION_S",
    "STATES",
    "FolderStatus",
    "ImageInfo",
    "JobRow",
    "Ledger",
    "LedgerMeta",
    "SavedFile",
    "Sidecar",
    "State",
    "StateTotals",
    "VerifyReport",
    "billed_failures_text",
    "build_sidecar",
    "check_image",
    "check_name",
    "check_pair",
    "check_pattern",
    "contained",
    "ensure_dir",
    "expected_pixels",
    "finished_files",
    "fold_name",
    "folder_status",
    "image_path",
    "input_image_path",
    "inspect_image",
    "is_temp_name",
    "ledger_path",
    "read_sidecar",
    "recorded_files",
    "relative_name",
    "remove_temp_files",
    "render_status",
    "render_verify",
    "save_image",
    "sidecar_path",
    "sidecar_schema_json",
    "slug",
    "store_error",
    "temp_files",
    "utc_stamp",
    "verify",
    "with_billed",
    "write_atomic",
    "write_sidecar",
]
