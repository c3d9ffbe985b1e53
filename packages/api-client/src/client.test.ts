/** The client's handling of links: the API gives paths when it cannot know the name it is reached by. */
import { ApiClient } from './client';

describe('ApiClient.absolute', () => {
  it('keeps full URLs and resolves paths against the API it talks to', () => {
    const client = new ApiClient({ baseUrl: 'http://ddpm-api.ml.svc:8080/' });
    expect(client.absolute('/samples/sample-1')).toBe('http://ddpm-api.ml.svc:8080/samples/sample-1');
    expect(client.absolute('https://ddpm.example/samples/sample-1')).toBe('https://ddpm.example/samples/sample-1');
  });
});
