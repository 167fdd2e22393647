/** proxy-from-env 2 ships no types; this is the one function quick-tunnel uses. */
declare module 'proxy-from-env' {
  /**
   * The proxy URL for `url` from *_PROXY / ALL_PROXY, or '' when none applies (unset, or
   * NO_PROXY lists the host). A proxy set without a scheme gets the URL's scheme.
   */
  export function getProxyForUrl(url: string | URL): string;
}
