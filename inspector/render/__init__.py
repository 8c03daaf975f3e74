"""Rendering: bertviz views and self-contained HTML reports (never imported by lower layers)."""
