"""placeholder"""
def convert_slide(*a, **k):
    raise NotImplementedError
