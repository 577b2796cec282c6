"""One completion: scheduled, generated through an engine, post-processed, remembered."""
