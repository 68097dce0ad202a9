"""Quality evaluation: datasets and converters, LLM judges, a resumable runner and its report.

`redraft eval` drives it from the command line; `Evaluation` is the runner, `load_dataset` reads
redraft's JSONL schema or converts PersonaChat, FoCus, INSCIT and PENGUIN files.
"""

from redraft.eval.converters import FORMATS, load_dataset
from redraft.eval.datasets import DatasetError, EvalCase, read_cases, write_cases
from redraft.eval.results import ResultsFile, Row
from redraft.eval.runner import Evaluation

__all__ = [
    "FORMATS",
    "DatasetError",
    "EvalCase",
    "Evaluation",
    "ResultsFile",
    "Row",
    "load_dataset",
    "read_cases",
    "write_cases",
]
