from cgtrain.cli import app

app(prog_name="cgtrain")
