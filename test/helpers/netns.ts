// The tests' network namespaces are the rehearsal lab's own (src/rehearse/lab/netns.ts).
export * from '../../src/rehearse/lab/netns.ts';
