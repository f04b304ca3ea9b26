"""Behavioural interoperability conformance: a guideline as data, a runner that puts
every site through the eight steps on real nodes, verdicts, and reports."""
