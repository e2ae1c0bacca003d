"""ipywidgets explorers, one module per lesson topic; each returns a widget to display."""
