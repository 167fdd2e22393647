/**
 * The public URL as a QR code made of half-block characters (two modules per
 * character cell), for opening a demo on a phone. uqr is pure JS without dependencies.
 */
import { renderUnicodeCompact } from 'uqr';
/**
 * Lines of the QR code for `text`. Light modules are drawn as blocks: on a dark
 * terminal with the default colours (or with `color`, where the view paints it
 * white-on-black) that is the usual dark-on-light code scanners expect.
 */
export function qrLines(text) {
    return renderUnicodeCompact(text, { border: 2, ecc: 'L' }).split('\n');
}
//# sourceMappingURL=qr.js.map