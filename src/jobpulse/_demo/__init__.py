"""``jobpulse demo``: a small in-process worker whose jobs show each failure mode."""
