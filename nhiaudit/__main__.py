from nhiaudit.cli import run

run()
