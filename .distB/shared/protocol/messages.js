export function isHelloMessage(value) {
    if (typeof value !== 'object' || value === null)
        return false;
    const v = value;
    return (Number.isInteger(v['protocol']) &&
        Number.isInteger(v['windowBytes']) &&
        v['windowBytes'] > 0 &&
        v['windowBytes'] <= 0x7fffffff &&
        Number.isInteger(v['maxStreams']) &&
        v['maxStreams'] >= 0 &&
        Number.isInteger(v['maxFrameBytes']) &&
        v['maxFrameBytes'] > 0);
}
/** Parses a JSON payload, returning undefined rather than throwing. */
export function parseJson(payload) {
    try {
        return JSON.parse(payload.toString('utf8'));
    }
    catch {
        return undefined;
    }
}
//# sourceMappingURL=messages.js.map