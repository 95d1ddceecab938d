"""A CNI conformance suite that drives any plugin through the CNI protocol."""

from podlab.lab.conformance.cases import CASES, SUITE_VERSIONS
from podlab.lab.conformance.suite import CaseResult, run_suite, summary

__all__ = ["CASES", "SUITE_VERSIONS", "CaseResult", "run_suite", "summary"]
