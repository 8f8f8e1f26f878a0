"""The legacy DMP export: IHE XDM packages (ITI TF-1 §16, ITI-32 "Distribute Document Set on Media") read
safely (`xdm`) and their ebRIM metadata turned into PDSm DocumentReferences (`metadata`). No I/O beyond the
package file; the import itself is spaces/legacy/importer.py, the set-aside store storage/legacy.py (docs/legacy.md)."""

from __future__ import annotations
