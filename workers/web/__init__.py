"""The search web page: static HTML/JS/CSS served by `newsflow serve` at / (package data)."""
