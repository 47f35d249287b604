"""Datasets: fetched from pinned sources (or a local mirror) with provenance, validated, subsampled."""

from .fetch import fetch_dataset, file_digests, provenance_path
from .select import PAPER_SIZES, domain_size, stage_dataset, subsample, subsample_file
from .summary import summary_table, write_summary
from .validate import read_chat_file, validate_chat_file

__all__ = [
    "PAPER_SIZES",
    "domain_size",
    "fetch_dataset",
    "file_digests",
    "provenance_path",
    "read_chat_file",
    "stage_dataset",
    "subsample",
    "subsample_file",
    "summary_table",
    "validate_chat_file",
    "write_summary",
]
