"""DECTRIS Stream V2 (and PSI Jungfraujoch's variant of it): the wire, the relay to the workers, a simulated EIGER2."""
