import warnings

# fastai's layers.py calls torch.jit.script at import; torch 2.14 warns about that on every command
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
