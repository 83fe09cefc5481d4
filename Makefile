# Thin aliases for scripts/dev.sh, which also works where make is not installed.
.PHONY: install serve test lint bench synth
install: ; scripts/dev.sh install
serve: ; scripts/dev.sh serve
test: ; scripts/dev.sh test
lint: ; scripts/dev.sh lint
bench: ; scripts/dev.sh bench
synth: ; scripts/dev.sh synth
