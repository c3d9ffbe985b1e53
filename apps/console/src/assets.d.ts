/** Styles imported for their side effect: esbuild bundles them into the console's stylesheet. */
declare module '*.css';
