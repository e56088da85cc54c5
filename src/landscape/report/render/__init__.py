"""The report layer's render: report text from an analysis dict only; no statistics, no params."""
