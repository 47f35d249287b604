from types import SimpleNamespace


def LoRARequest(name, number, path):
    return SimpleNamespace(name=name, number=number, path=path)
