// AudioWorklet: microphone at the context's rate → 16 kHz 16-bit mono PCM, 20 ms (320 samples) per message.
// Downsampling averages the input over each output sample's span (a box filter: enough anti-aliasing
// for speech, and it works for any ratio, 48 kHz or 44.1 kHz).
class MicDownsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.outRate = opts.outRate || 16000;
    this.frameSamples = Math.round(this.outRate * (opts.frameMs || 20) / 1000);
    this.ratio = sampleRate / this.outRate;
    this.acc = 0;      // sum of input samples in the current output span
    this.count = 0;    // how many input samples went into acc
    this.pos = 0;      // fractional position inside the current span
    this.frame = new Int16Array(this.frameSamples);
    this.n = 0;
    this.energy = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      this.acc += ch[i];
      this.count += 1;
      this.pos += 1;
      if (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        const v = Math.max(-1, Math.min(1, this.acc / this.count));
        this.acc = 0;
        this.count = 0;
        this.frame[this.n++] = v < 0 ? v * 32768 : v * 32767;
        this.energy += v * v;
        if (this.n === this.frameSamples) {
          const rms = Math.sqrt(this.energy / this.frameSamples);
          this.port.postMessage({ pcm: this.frame.buffer, rms }, [this.frame.buffer]);
          this.frame = new Int16Array(this.frameSamples);
          this.n = 0;
          this.energy = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("mic-downsampler", MicDownsampler);
