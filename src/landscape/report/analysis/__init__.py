"""The report layer's analysis: every number of a question (statistics, claims, verdicts) as a JSON-able dict."""
