"""Table names of the two partitions: space data and the directory (same shapes). Names come only from here,
never from input, so interpolating them into SQL is safe."""

from __future__ import annotations

from dataclasses import dataclass

from espace_sante.fhir.compartment import is_directory


@dataclass(frozen=True)
class Tables:
    resource: str
    version: str
    token: str
    string: str
    date: str
    reference: str
    quantity: str
    number: str

    @property
    def index_tables(self) -> tuple[str, ...]:
        return (self.token, self.string, self.date, self.reference, self.quantity, self.number)


SPACE = Tables(
    "resource",
    "resource_version",
    "sp_token",
    "sp_string",
    "sp_date",
    "sp_reference",
    "sp_quantity",
    "sp_number",
)
DIRECTORY = Tables(
    "dir_resource",
    "dir_resource_version",
    "dir_sp_token",
    "dir_sp_string",
    "dir_sp_date",
    "dir_sp_reference",
    "dir_sp_quantity",
    "dir_sp_number",
)


def tables_for(resource_type: str) -> Tables:
    return DIRECTORY if is_directory(resource_type) else SPACE
