"""placeholder"""
def neuron_view(*a, **k):
    raise NotImplementedError
