"""NUWA-Infinity as the paper names it: config, ADC (adc), NCP (ncp), the decoder (decoder), the local
decoders (local), Algorithm 1 training (train), Algorithm 2 generation with pre-caching (generate) and
the model family the commands use (family). It imports only nuwa.core."""
