from nhiaudit.cli import app

app(prog_name="nhiaudit")
